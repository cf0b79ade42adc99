"""Report pieces: result files, figures, the index page, tables, the budget widgets, and the
experiment helpers they rest on (cycles, repetition loops, gap %, memory-bound N)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pdlib import theory
from pdlib.experiments import memory_cycles as mc
from pdlib.experiments import sweep
from pdlib.records import StepLog, StepRecord
from pdlib.report import index, plots, results


def test_results_sections_merge_atomically(tmp_path):
    results.write_section(tmp_path, "alpaca", "kstar", {"k_star": np.int64(3), "gap_pct": np.float64(1.25),
                                                        "curve": np.arange(3), "bad": float("nan")})
    results.write_section(tmp_path, "alpaca", "memory", {"errors_pct": {"X0": 2.0}}, cell={"dataset": "alpaca"})
    d = json.loads((tmp_path / "alpaca_results.json").read_text())
    assert d["kstar"] == {"k_star": 3, "gap_pct": 1.25, "curve": [0, 1, 2], "bad": None}
    assert d["memory"]["errors_pct"]["X0"] == 2.0 and d["cell"]["dataset"] == "alpaca"
    assert not list(tmp_path.glob(".*tmp*"))
    h = results.headline(d)
    assert h["k_star"] == 3 and h["X0_err_pct"] == 2.0 and h["k_hat"] is None


def test_results_bad_json_names_file(tmp_path):
    f = tmp_path / "x_results.json"
    f.write_text("{not json")
    with pytest.raises(ValueError, match="x_results.json"):
        results.read_results(tmp_path, "x")


def test_save_figure_seed_names(tmp_path):
    fig = plots.throughput_vs_k([{"k": 1, "requests_per_s": 2.0}, {"k": 2, "requests_per_s": 3.0}], k_star=2, k_hat=2,
                                sim_rows=[{"k": 1, "requests_per_s": 2.1}, {"k": 2, "requests_per_s": 2.9}],
                                theory={"k": [1, 2], "requests_per_s": [2, 3]}, online_rps=2.5)
    ax = fig.axes[0]
    assert "requests/s" in ax.get_ylabel() and "(requests)" in ax.get_xlabel()
    rows = [{"k": 1, "requests_per_s": 2.0, "steady_requests_per_s": 2.1, "steady_requests_per_s_ci": [1.9, 2.3]},
            {"k": 2, "requests_per_s": 3.0, "steady_requests_per_s": 3.0, "steady_requests_per_s_ci": [None, None]}]
    f2 = plots.throughput_vs_k(rows, k_star=2, k_hat=2, k_star_range=(1, 2))
    assert any("95 % CI of p" in t.get_text() for t in f2.axes[0].get_legend().get_texts())
    f3 = plots.kstar_convergence([[8, 0.02, 2], [16, 0.03, 3]], k_star_offline=2, p_offline=0.02, p_interval=(0.015, 0.03))
    assert any("95 % CI" in t.get_text() for t in f3.axes[0].get_legend().get_texts())
    paths = plots.save_figure(fig, tmp_path, "throughput_vs_k", "alpaca")
    assert [p.name for p in paths] == ["alpaca_throughput_vs_k.pdf", "alpaca_throughput_vs_k.png"]
    assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].read_bytes()[:4] == b"\x89PNG"


def _log(rows):
    log = StepLog()
    for i, (phase, batch, kv, fin) in enumerate(rows):
        log.append(StepRecord(step=i, phase=phase, batch_size=batch, tokens=batch, kv_tokens=kv, duration_s=0.01,
                              k=1, finished=list(fin)))
    return log


def test_cycles_by_hand():
    # N=2: fill, decode until one finishes, refill 1, decode ... (warmup 0 counts every full cycle)
    log = _log([("prefill", 2, 10, []), ("decode", 2, 12, []), ("decode", 2, 8, ["a"]),
                ("prefill", 1, 14, []), ("decode", 2, 16, []), ("decode", 2, 18, []), ("decode", 2, 9, ["b"]),
                ("prefill", 1, 13, []), ("decode", 1, 14, [])])
    cyc = mc.cycles(log, 2, warmup=0)
    assert cyc[["X0", "Xmax", "supY"]].values.tolist() == [[10, 12, 2], [14, 18, 4]]   # last: batch 1, not full
    assert mc.cycles(log, 2, warmup=1)["X0"].tolist() == [14]


def test_validate_thresholds_and_bound():
    th = mc.theory_memory(64, 16, 0.01, 100.0, 50.0)
    cyc = pd.DataFrame({"X0": [th["E_X0"] * 1.05] * 10, "Xmax": [th["E_Xmax"] * 1.2] * 10,
                        "supY": np.linspace(0, 2 * th["kappa"], 10)})
    v = mc.validate(cyc, th)
    # signed: prediction/measured - 1 (was |measured - theory|/theory = 5.0, sign lost)
    assert v["errors_pct"]["X0"] == pytest.approx(100 * (1 / 1.05 - 1))
    assert v["errors_pct"]["Xmax"] == pytest.approx(100 * (1 / 1.2 - 1))
    assert v["pass"]["X0"] and not v["pass"]["Xmax"] and not v["all_pass"]
    assert v["verdicts"]["X0"] == "pass" and v["verdicts"]["Xmax"] == "fail"
    assert 0 <= v["bound_valid_pct"] <= 100
    with pytest.raises(ValueError, match="no steady-state cycles"):
        mc.validate(cyc.iloc[:0], th)


def test_no_steady_state_makes_every_verdict_inconclusive():
    th = mc.theory_memory(64, 16, 0.01, 100.0, 50.0)
    cyc = pd.DataFrame({"X0": [th["E_X0"]] * 40, "Xmax": [th["E_Xmax"]] * 40, "supY": [th["kappa"]] * 40})
    assert mc.validate(cyc, th)["verdicts"]["X0"] == "pass"
    cyc.attrs["warmup"] = {"at_limit": True}                  # MSER-5 found no steady state
    v = mc.validate(cyc, th)
    assert set(v["verdicts"].values()) == {"inconclusive"} and not v["all_pass"] and "steady state" in v["verdict_note"]


def test_tail_and_audit():
    assert mc.tail([1, 2, 3, 4], [0, 2, 4]).tolist() == [1.0, 0.5, 0.0]
    th = mc.theory_memory(32, 8, 0.02, 50.0)
    a = mc.formula_audit(th, {"X0": th["E_X0"]}, {"X0": th["E_X0"] * 1.1})
    assert a["vs_monte_carlo_pct"].round(6).tolist()[1:] == [0.0, 0.0, 10.0]
    assert a["E_X0_tokens"][0] == pytest.approx(theory.E_X0_seed000_misprint(32, 0.25, 0.02, 50.0))


def test_sweep_helpers():
    assert sweep.sweep_ks(8, 4, include=[2]) == [1, 2, 3, 5, 7]
    assert sweep.k_hat([{"k": 1, "requests_per_s": 3}, {"k": 2, "requests_per_s": 5}, {"k": 3, "requests_per_s": 5}]) == 2
    assert sweep.gap_pct(9.0, 10.0) == pytest.approx(10.0)
    assert sweep.repetition_loop([5, 6, 7] * 20)
    assert not sweep.repetition_loop(list(range(60)))
    assert not sweep.repetition_loop([1] * 10)      # shorter than the window
    mb = sweep.memory_bound_N(gpu_memory_gb=16, model_memory_gb=4, kv_cache_bytes=114688, theta=0.2, p=0.005,
                              mu_L=200, oom_tolerance=0.01)
    C = 12e9 / 114688
    assert mb["N_star_prop3"] == theory.N_star_prop3(C, 0.2, 0.005, 200, 0.01)
    assert mb["N_star_prop3_range"] is None
    # p's interval -> N*'s range: longer outputs (smaller p) need more KV per slot, so fewer slots
    lo, hi = sweep.memory_bound_N(gpu_memory_gb=16, model_memory_gb=4, kv_cache_bytes=114688, theta=0.2, p=0.005,
                                  mu_L=200, oom_tolerance=0.01, p_range=(0.004, 0.006))["N_star_prop3_range"]
    assert lo == int(theory.N_star_prop3(C, 0.2, 0.004, 200, 0.01)) < mb["N_star_prop3"] < hi
    with pytest.raises(ValueError, match="exceeds"):
        sweep.memory_bound_N(gpu_memory_gb=4, model_memory_gb=8, kv_cache_bytes=1, theta=0.2, p=0.1, mu_L=1)


TIMING = theory.TimingModel(0.05, 1e-5, 0.01, 1e-4)


def _geo(seed, n, max_input, p):
    """A length-only workload (uniform inputs, geometric outputs) and a simulator with ``TIMING``."""
    from pdlib.engines import get_engine
    from pdlib.workload import Workload
    rng = np.random.default_rng(seed)
    wl = Workload.from_lengths("geo", rng.integers(20, max_input, n), rng.geometric(p, n))
    return wl, get_engine("sim", timing=TIMING)


def test_kstar_experiment_on_sim_matches_theory():
    """The full notebook-02 computation on the simulator with a geometric workload."""
    wl, eng = _geo(0, 400, 200, 0.02)
    timing = TIMING
    exp = sweep.kstar_experiment(eng, wl, timing, N=16, n_points=5,
                                 kstar_update_interval=8, offline_p_multiplier=4)
    assert exp.k_star == theory.k_star(16, exp.p_offline, **timing.as_kwargs(), mu_L=exp.mu_L).k
    assert exp.gap_pct >= 0 and exp.k_hat in exp.ks
    assert exp.online["completed"] == 400
    js = exp.to_json()
    assert "online_result" not in js and "memory_bound" not in js and js["k_hat_sim"] == exp.k_hat_sim
    assert json.loads(json.dumps(js, allow_nan=False)) == js          # JSON-ready: no live objects
    assert js["timing"]["alpha_p"] == 0.05
    tl = exp.timeline(max_steps=10)
    assert len(tl["step"]) == 10 and set(tl["phase"]) <= {"prefill", "decode"}


def test_memory_experiment_on_sim_result_and_json():
    wl, eng = _geo(1, 300, 100, 0.05)
    exp = mc.memory_experiment(eng, wl, N=8, k=2, timing=TIMING, warmup=2, mc_requests=500)
    js = exp.to_json()
    assert json.loads(json.dumps(js, allow_nan=False)) == js
    assert js["cycles"] == len(exp.cycles) == exp.validation["cycles"] > 0
    assert js["formula_audit"] == exp.audit.to_dict(orient="records")
    assert exp.bound is exp.validation["bound"] and "run" not in js and "bound" not in js
    assert "KV tokens" in plots.memory_validation(exp.cycles, exp.theory, exp.bound).axes[0].get_xlabel()


def test_index_lists_cells_and_failures(tmp_path):
    ok = tmp_path / "g" / "alpaca" / "m" / "sim"
    bad = tmp_path / "g" / "sharegpt" / "m" / "sim"
    results.write_section(ok, "alpaca", "kstar", {"k_star": 4, "k_hat": 5, "gap_pct": 0.75})
    (ok / "cell.json").write_text(json.dumps({"grid": "g", "cell": "alpaca/m/sim", "params": {"dataset": "alpaca"},
                                              "notebooks": {"02": {"status": "ok", "html": "02.html"}}}))
    bad.mkdir(parents=True)
    (bad / "cell.json").write_text(json.dumps({"grid": "g", "cell": "sharegpt/m/sim", "params": {"dataset": "sharegpt"},
                                               "notebooks": {"01": {"status": "failed", "error": "KeyError: <boom>",
                                                                    "html": None, "ipynb": "01.ipynb"}}}))
    page = index.write_index(tmp_path).read_text()
    assert "alpaca/m/sim" in page and "0.75" in page and "g/alpaca/m/sim/02.html" in page
    assert "sharegpt/m/sim" in page and "KeyError: &lt;boom&gt;" in page
    df = index.summary_frame(tmp_path / "g")
    assert df.set_index("cell").loc["sharegpt/m/sim", "notebooks_failed"] == 1


def test_budget_widgets_callbacks():
    pytest.importorskip("ipywidgets")
    from pdlib.report.widgets import BudgetExplorer, budget_explorer
    ui = BudgetExplorer()
    before = ui.output.value
    assert "rtx4080" in before
    b0 = int(ui.table["b_mem"].iloc[0])
    ui.controls["mean_tokens"].value = 1000          # twice the tokens per request: about half the batch
    assert int(ui.table["b_mem"].iloc[0]) in (b0 // 2, b0 // 2 - 1, b0 // 2 + 1)
    ui.controls["gpu"].value = "h100-80gb"
    assert "h100-80gb" in ui.output.value and ui.output.value != before
    ui.controls["dtype"].value = "fp32"
    assert ui.values()["dtype"] == "fp32"
    static = budget_explorer(interactive=False, gpu="rtx4080")
    assert isinstance(static, pd.DataFrame)


def test_choose_k_paper_or_length_aware():
    """Notebook 03's refill size: the paper's k* (p's interval and k* range kept) or, with
    k_rule="lengths", theory.k_star_lengths on the workload's pairs with the paper's k* beside."""
    from pdlib.report import tables
    wl, eng = _geo(3, 400, 200, 0.02)
    paper = mc.choose_k(16, wl, TIMING)
    assert paper["rule"] == "paper" and paper["paper_k_star"] is None
    assert paper == {**sweep.k_star_from_workload(16, wl, TIMING), "rule": "paper", "paper_k_star": None}
    la = mc.choose_k(16, wl, TIMING, "lengths")
    want = theory.k_star_lengths(16, TIMING.alpha_p, TIMING.beta_p, TIMING.alpha_d, TIMING.beta_d,
                                 wl.input_lens, np.maximum(wl.output_lens, 1)).k
    assert la["k_star"] == want and la["paper_k_star"] == paper["k_star"] and la["p"] == paper["p"]
    with pytest.raises(ValueError, match="k_rule must be one of"):
        mc.choose_k(16, wl, TIMING, "best")
    m = mc.memory_experiment(eng, wl, N=16, k=la["k_star"], timing=TIMING, warmup=2, mc_requests=300, k_choice=la)
    md = tables.memory_md(m.to_json())
    assert f"length-aware k\\* ({want}" in md and f"paper's k\\* would be {paper['k_star']}" in md


def test_tables_read_the_result_or_its_json():
    from pdlib.report import tables
    wl, eng = _geo(2, 200, 100, 0.05)
    exp = sweep.kstar_experiment(eng, wl, TIMING, N=8, n_points=3, kstar_update_interval=8, offline_p_multiplier=2)
    js = json.loads(json.dumps(exp.to_json()))                        # as read back from the results file
    assert tables.kstar_md(exp) == tables.kstar_md(js) and f"k\\* = {exp.k_star}" in tables.kstar_md(js)
    pd.testing.assert_frame_equal(tables.sweep_table(exp), tables.sweep_table(js))
    assert tables.truncation_md(exp) == tables.truncation_md(js)
    m = mc.memory_experiment(_geo(2, 200, 100, 0.05)[1], wl, N=8, k=2, timing=TIMING, warmup=2, mc_requests=300)
    assert tables.memory_md(m) == tables.memory_md(m.to_json())
    assert tables.memory_errors_table(m).loc["X0", "theory"] == pytest.approx(m.theory["E_X0"], abs=0.01)


def test_report_calls_no_experiment_code():
    """report sits above experiments but only reads results: its one pdlib.experiments import
    is the JSON primitives of ``pdlib.experiments.result``."""
    import ast
    from pathlib import Path

    import pdlib.report
    for f in Path(pdlib.report.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                assert not mod.startswith(("pdlib.experiments", "pdlib.engines")) or mod == "pdlib.experiments.result", \
                    (f.name, mod)


def test_index_shows_signed_errors_intervals_verdicts_and_request_warnings(tmp_path):
    d = tmp_path / "g" / "sharegpt" / "m" / "sim"
    warn = "2000 requests asked, only 803 used: the source has 803 record(s)"
    results.write_section(d, "sharegpt", "kstar", {
        "k_star": 20, "k_hat": 13, "gap_pct": 3.0, "p_interval": {"p": 0.01, "p_lo": 0.008, "p_hi": 0.013},
        "k_star_range": {"k_star_min": 14, "k_star_max": 23}, "k_star_lengths": {"k": 13},
        "requests": {"requested": 2000, "used": 803, "warning": warn}})
    results.write_section(d, "sharegpt", "memory", {
        "errors_pct": {"X0": -9.1, "Xmax": 3.0, "kappa": 40.0}, "bound_valid_pct": 95.0,
        "errors_ci_pct": {"X0": [-27.0, 2.0], "Xmax": [-1.0, 6.0], "kappa": [25.0, 60.0]},
        "verdicts": {"X0": "inconclusive", "Xmax": "pass", "kappa": "fail", "bound_valid": "pass"},
        "requests": {"requested": 2000, "used": 803, "warning": warn}})
    (d / "cell.json").write_text(json.dumps({"grid": "g", "cell": "sharegpt/m/sim", "params": {"dataset": "sharegpt"},
                                             "notebooks": {"03": {"status": "ok", "html": "03.html"}}}))
    page = index.write_index(tmp_path).read_text()
    assert "-9.1" in page and "[-27.0, +2.0]" in page and "inconclusive" in page and "fail" in page
    assert "803/2000" in page and "only 803 used" in page and "14–23" in page and "[0.008, 0.013]" in page
    h = index.headline_ci(results.read_results(d, "sharegpt"))
    assert h["X0_err_lo"] == -27.0 and h["kappa_verdict"] == "fail" and h["warnings"] == [warn]
    df = index.summary_frame(tmp_path / "g")
    assert df.loc[0, "warnings"] == warn
    assert plots.grid_summary(df).axes[1].get_xlabel().startswith("signed error")
