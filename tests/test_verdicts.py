"""pdlib.verdicts: MSER-5 steady-state detection, batch-means intervals, the pass / fail /
inconclusive rule, p's interval and the requested-vs-used warning (issue 14, item 5)."""
from __future__ import annotations

import numpy as np
import pytest

from pdlib import verdicts as V


def _ar1(rng, n, phi, mu=0.0):
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi * phi)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return mu + x


def test_mser5_detects_a_warmup_transient():
    rng = np.random.default_rng(0)
    n = 1000
    t = np.arange(n)
    x = 100.0 - 60.0 * np.exp(-t / 40.0) + rng.standard_normal(n)      # climbs for ~200 values
    m = V.mser(x)
    assert 100 <= m["truncate"] <= 400 and m["truncate"] % 5 == 0 and not m["at_limit"]
    assert "truncating" in m["reason"]
    kept = x[m["truncate"]:]
    assert abs(kept.mean() - 100.0) < abs(x.mean() - 100.0) / 5


def test_mser5_on_a_stationary_series_drops_almost_nothing():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        assert V.mser(rng.standard_normal(1000))["truncate"] <= 50          # <= 5 % of the series
        assert V.mser(_ar1(rng, 1000, 0.5))["truncate"] <= 100


def test_mser5_flags_a_series_that_never_settles_and_short_series():
    x = np.arange(500, dtype=float)                                           # still climbing at the end
    m = V.mser(x)
    assert m["at_limit"] and "no steady state" in m["reason"]
    s = V.mser([1.0, 2.0, 3.0])
    assert s["truncate"] == 0 and not s["ok"] and "fewer" in s["reason"]


def test_batch_means_ci_covers_about_95_percent_on_ar1():
    rng = np.random.default_rng(1)
    phi, n, reps = 0.7, 2000, 300
    hits = 0
    for _ in range(reps):
        ci = V.batch_means_ci(_ar1(rng, n, phi, mu=5.0))
        hits += ci["lo"] <= 5.0 <= ci["hi"]
    assert 0.90 <= hits / reps <= 0.99
    few = V.batch_means_ci([1.0, 2.0, 3.0])
    assert few["mean"] == 2.0 and np.isnan(few["lo"]) and few["batches"] == 0


def test_ratio_ci_is_the_ratio_of_sums_with_an_interval():
    rng = np.random.default_rng(2)
    den = rng.uniform(0.5, 1.5, 400)
    num = 3.0 * den + rng.normal(0, 0.1, 400)
    ci = V.ratio_ci(num, den)
    assert ci["mean"] == pytest.approx(num.sum() / den.sum())
    assert ci["lo"] < 3.0 < ci["hi"] and ci["hi"] - ci["lo"] < 0.1


def test_t_quantiles():
    assert V.t975(1) == pytest.approx(12.706) and V.t975(30) == pytest.approx(2.042)
    assert V.t975(60) == pytest.approx(2.000, abs=2e-3) and V.t975(10_000) == pytest.approx(1.960, abs=1e-3)


def test_verdict_rule_on_hand_made_intervals():
    assert V.verdict(-4.0, 8.0, 10) == "pass"
    assert V.verdict(-4.0, 12.0, 10) == "inconclusive"                          # straddles +10
    assert V.verdict(-12.0, 3.0, 10) == "inconclusive"                          # straddles -10
    assert V.verdict(11.0, 30.0, 10) == "fail" and V.verdict(-30.0, -10.0, 10) == "fail"
    assert V.verdict(-12.0, 12.0, 10) == "inconclusive"                          # covers the whole band
    assert V.verdict(float("nan"), 1.0, 10) == "inconclusive"                   # no interval: never pass
    assert V.verdict(None, None, 10) == "inconclusive"
    assert V.verdict_at_least(92, 100, 90) == "pass" and V.verdict_at_least(50, 89, 90) == "fail"
    assert V.verdict_at_least(80, 95, 90) == "inconclusive"


def test_signed_error_and_its_interval():
    assert V.signed_error_pct(110.0, 100.0) == pytest.approx(10.0)
    assert V.signed_error_pct(90.0, 100.0) == pytest.approx(-10.0)
    e = V.error_interval(100.0, {"mean": 100.0, "lo": 90.0, "hi": 125.0})
    assert e["error_pct"] == 0.0 and e["lo"] == pytest.approx(-20.0) and e["hi"] == pytest.approx(100 / 0.9 - 100)
    e2 = V.error_interval(100.0, {"mean": 100.0, "lo": 90.0, "hi": 125.0}, {"lo": 95.0, "hi": 105.0})
    assert e2["lo"] < e["lo"] and e2["hi"] > e["hi"]                           # the prediction's own interval widens it
    assert np.isnan(V.error_interval(1.0, {"mean": 1.0, "lo": float("nan"), "hi": float("nan")})["lo"])


def test_wilson_interval():
    lo, hi = V.wilson(np.array([0, 50, 100]), 100)
    assert lo[0] == pytest.approx(0, abs=1e-12) and hi[2] == pytest.approx(1) and lo[1] < 0.5 < hi[1]


def test_p_interval_from_the_mean_of_lengths():
    rng = np.random.default_rng(3)
    L = rng.geometric(0.01, 64)
    iv = V.p_interval(L)
    assert iv["p"] == pytest.approx(1 / L.mean()) and iv["p_lo"] < iv["p"] < iv["p_hi"]
    assert iv["p_lo"] == pytest.approx(1 / iv["mean_hi"]) and iv["n"] == 64
    ivs = [V.p_interval(rng.geometric(0.01, 400)) for _ in range(200)]
    assert 0.90 <= np.mean([i["p_lo"] <= 0.01 <= i["p_hi"] for i in ivs]) <= 0.99


def test_requested_vs_used_warning():
    ok = V.request_counts(64, 64)
    assert ok == {"requested": 64, "used": 64, "warning": None}
    assert V.request_counts(None, 10)["warning"] is None                       # all requests asked
    meta = {"records": 1000, "parsed": 900, "skipped": 97, "skip_reasons": {"empty_output": 90, "too_long": 7}}
    w = V.request_counts(2000, 803, meta)
    assert w["requested"] == 2000 and w["used"] == 803
    assert "2000 requests asked, only 803 used" in w["warning"]
    assert "1000 record" in w["reason"] and "97 skipped" in w["reason"] and "empty_output: 90" in w["reason"]


def test_metrics_cycles_mser_reports_why():
    from pdlib import metrics, theory
    from pdlib.engines import get_engine
    from pdlib.policy import FixedK
    from pdlib.workload import Workload
    rng = np.random.default_rng(4)
    wl = Workload.from_lengths("heavy", rng.integers(20, 200, 1500),
                               np.minimum((rng.pareto(1.3, 1500) * 30 + 1).astype(int), 3000))
    res = get_engine("sim", timing=theory.TimingModel(0.05, 1e-5, 0.01, 1e-4)).run(wl, FixedK(16, 4))
    cy = metrics.cycles(res.log, warmup="mser")
    info = cy.warmup_info
    assert info["rule"] == "MSER-5 on X0" and info["dropped"] == cy.warmup >= 1 and "MSER-5" in info["reason"]
    assert len(cy) > 0
    assert "geometric rule" in metrics.cycles(res.log, warmup="auto").warmup_info["reason"]


def test_tables_show_requests_and_validity():
    from pdlib.report import tables
    from pdlib.workload import Workload

    class _Cell:
        def describe(self):
            return {"dataset": "d", "model": "m", "engine": "sim", "num_requests": 2000, "seed": 0, "data_dir": "x"}

    wl = Workload.from_lengths("d", [10] * 5, [3] * 5, records=5)
    h = tables.cell_header(_Cell(), wl)
    assert "used 5 of 2000 requested" in h and "only 5 used" in h and "5 record" in h
    js = {"validity": {"paper": [{"name": "short_inputs", "holds": False, "value": 2.0, "threshold": 0.1, "why": "w"}],
                       "length_aware": None}}
    df = tables.validity_table(js)
    assert not df.loc[("paper", "short_inputs"), "holds"]
