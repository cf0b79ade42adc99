"""Simulator semantics: hand-checked step logs, equality with the literal step loop,
reproducibility, the engine protocol, metrics and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pdlib import metrics, sim, theory
from pdlib.engines import get_engine
from pdlib.policy import DynamicKStar, FixedK
from pdlib.records import COLUMNS, RunResult, StepLog, StepRecord
from pdlib.workload import Workload

T = theory.TimingModel(alpha_p=0.5, beta_p=0.01, alpha_d=0.1, beta_d=0.02)


def _wl(I, L):
    return Workload.from_lengths("hand", I, L)


def test_hand_checked_N2_k1():
    # requests (input, output): 0:(3,1) 1:(5,3) 2:(7,2) 3:(2,4) 4:(4,2)
    res = sim.simulate(2, 1, workload=_wl([3, 5, 7, 2, 4], [1, 3, 2, 4, 2]), timing=T, kv_bytes_per_token=10)
    c = res.log.columns
    # 0: prefill {0,1}: 0 finishes in its prefill (L=1); KV = 5+1
    # 1: free 1 >= k -> prefill {2}: KV = 6 + 7+1
    # 2: decode [1,2]: 2 reaches L=2 -> KV = 5+2
    # 3: prefill {3}: 7 + 2+1;  4: decode [1,3]: 1 done -> 2+2
    # 5: prefill {4}: 4 + 4+1;  6: decode [3,4]: 4 done -> 2+3;  7: decode [3]: done -> 0
    assert list(c["phase"]) == [
        "prefill",
        "prefill",
        "decode",
        "prefill",
        "decode",
        "prefill",
        "decode",
        "decode",
    ]
    assert c["batch_size"].tolist() == [2, 1, 2, 1, 2, 1, 2, 1]
    assert c["tokens"].tolist() == [8, 7, 2, 2, 2, 4, 2, 1]
    assert c["kv_tokens"].tolist() == [6, 14, 7, 10, 4, 9, 5, 0]
    assert c["kv_bytes"].tolist() == [60, 140, 70, 100, 40, 90, 50, 0]
    assert list(c["finished"]) == [["0"], [], ["2"], [], ["1"], [], ["4"], ["3"]]
    assert list(c["admitted"]) == [["0", "1"], ["2"], [], ["3"], [], ["4"], [], []]
    assert c["k"].tolist() == [1] * 8
    np.testing.assert_allclose(c["duration_s"], [0.5 + 0.08, 0.5 + 0.07, 0.14, 0.52, 0.14, 0.54, 0.14, 0.12])
    assert res.requests["finish_step"].tolist() == [0, 4, 2, 7, 6]
    assert res.requests["admit_step"].tolist() == [0, 0, 1, 3, 5]


def test_refill_waits_for_k_and_admits_all_free():
    # N=3, k=2, every input 1 token, outputs 0:2 1:3 2:3 3:4 4:4 5:4 6:1.
    # One finish (step 1) is not enough; two more at step 2 free 3 slots and the
    # refill admits all 3 (>= k); three finish together at step 6; request 6 (L=1)
    # finishes in its own prefill and the run ends.
    res = sim.simulate(3, 2, workload=_wl([1] * 7, [2, 3, 3, 4, 4, 4, 1]), timing=T)
    c = res.log.columns
    assert list(c["phase"]) == [
        "prefill",
        "decode",
        "decode",
        "prefill",
        "decode",
        "decode",
        "decode",
        "prefill",
    ]
    assert c["batch_size"].tolist() == [3, 3, 2, 3, 3, 3, 3, 1]
    assert list(c["finished"]) == [[], ["0"], ["1", "2"], [], [], [], ["3", "4", "5"], ["6"]]
    assert list(c["admitted"]) == [["0", "1", "2"], [], [], ["3", "4", "5"], [], [], [], ["6"]]
    assert c["kv_tokens"].tolist() == [6, 6, 0, 6, 9, 12, 0, 0]


@pytest.mark.parametrize("trial", range(40))
def test_fast_core_equals_literal_step_loop(trial):
    rng = np.random.default_rng(trial)
    N = int(rng.integers(1, 10))
    n = int(rng.integers(1, 60))
    I = rng.integers(0, 30, n)
    L = rng.geometric(0.25, n) if trial % 2 else rng.integers(1, 15, n)
    w = _wl(I, L)
    kw = {
        "max_tokens": None if trial % 3 else 6,
        "kv_bytes_per_token": None if trial % 4 else 3,
        "steps": None if trial % 5 else int(rng.integers(1, 40)),
    }
    if trial % 2:
        mk = lambda: DynamicKStar(N, T, 0.3, ema_alpha=0.4, update_interval=2)
    else:
        k = int(rng.integers(1, N + 1))
        mk = lambda: FixedK(N, k)
    fast = sim.simulate(N, mk(), workload=w, timing=T, **kw).log.columns
    ref = sim.simulate_stepwise(N, mk(), w, timing=T, **kw).columns
    for col in COLUMNS:
        a, b = fast[col], ref[col]
        assert len(a) == len(b), col
        if col in ("finished", "admitted"):
            assert list(a) == list(b), col
        elif col in ("duration_s", "kv_bytes"):
            np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), err_msg=col)
        else:
            assert np.array_equal(np.asarray(a), np.asarray(b)), col


def test_kv_is_sum_of_input_plus_generated():
    """Independent check of the KV column from the per-request admit/finish steps."""
    res = sim.simulate(8, 3, 0.05, input_lens=np.array([5, 50, 120]), steps=3000, seed=2, timing=T)
    c, r = res.log.columns, res.requests
    S = len(c["step"])
    isp = np.asarray(c["phase"]) == "prefill"
    n_dec_before = np.concatenate([[0], np.cumsum(~isp)])  # decode steps before step s
    kv = np.zeros(S, dtype=np.int64)
    for i in range(len(r["input_len"])):
        a, f = r["admit_step"][i], r["finish_step"][i]
        end = S if f < 0 else f  # held after steps a..end-1
        steps = np.arange(a, end)
        gen = 1 + n_dec_before[steps + 1] - n_dec_before[a + 1]
        kv[steps] += r["input_len"][i] + gen
    assert np.array_equal(kv, c["kv_tokens"])


def test_reproducible_and_common_random_numbers():
    a = sim.simulate(16, 4, 0.02, input_lens=[10, 200], steps=5000, seed=7, timing=T)
    b = sim.simulate(16, 4, 0.02, input_lens=[10, 200], steps=5000, seed=7, timing=T)
    c = sim.simulate(16, 4, 0.02, input_lens=[10, 200], steps=5000, seed=8, timing=T)
    for col in ("kv_tokens", "batch_size", "duration_s"):
        assert np.array_equal(a.log[col], b.log[col])
    assert not np.array_equal(a.log["kv_tokens"], c.log["kv_tokens"])
    # request i has the same lengths whatever k consumes (common random numbers)
    d = sim.simulate(16, 11, 0.02, input_lens=[10, 200], steps=20000, seed=7, timing=T)
    n = len(a.requests["output_len"])
    assert np.array_equal(a.requests["output_len"], d.requests["output_len"][:n])
    assert np.array_equal(a.requests["input_len"], d.requests["input_len"][:n])


def test_length_sources():
    w = _wl([3, 4, 5, 6], [2, 2, 9, 1])
    r = sim.simulate(
        2, 1, input_lens=sim.InOrder([3, 4, 5, 6]), output_lens=sim.InOrder([2, 2, 9, 1]), timing=T
    )
    assert np.array_equal(r.log["kv_tokens"], sim.simulate(2, 1, workload=w, timing=T).log["kv_tokens"])
    emp = sim.simulate(4, 2, input_lens=7, output_lens=np.array([3, 5]), num_requests=500, timing=T)
    assert set(emp.requests["output_len"].tolist()) == {3, 5} and len(emp.requests["output_len"]) == 500
    assert emp.requests["finish_step"].min() >= 0  # a finite queue drains completely
    geo = sim.simulate(4, 2, 0.1, input_lens=sim.GammaInt(100, 400), num_requests=20000, timing=T)
    assert abs(geo.requests["output_len"].mean() - 10) < 0.3
    assert abs(geo.requests["input_len"].mean() - 100) < 1 and abs(geo.requests["input_len"].var() - 400) < 40
    capped = sim.simulate(4, 2, 0.1, input_lens=1, num_requests=2000, timing=T, max_tokens=5)
    assert capped.requests["output_len"].max() == 5
    assert capped.requests["truncated"].sum() == (capped.requests["ref_output_len"] > 5).sum() > 0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="N"):
        sim.simulate(0, 1, 0.1, input_lens=1, steps=10)
    with pytest.raises(ValueError, match="k"):
        sim.simulate(4, 5, 0.1, input_lens=1, steps=10)
    with pytest.raises(ValueError, match="p"):
        sim.simulate(4, 2, input_lens=1, steps=10)
    with pytest.raises(ValueError, match="p"):
        sim.simulate(4, 2, 1.5, input_lens=1, steps=10)
    with pytest.raises(ValueError, match="steps"):
        sim.simulate(4, 2, 0.1, input_lens=1)
    with pytest.raises(ValueError, match="input_lens"):
        sim.simulate(4, 2, 0.1, steps=10)
    with pytest.raises(ValueError, match="request index 2"):
        sim.simulate(4, 2, workload=_wl([1, 1, 1], [3, 2, 0]))
    with pytest.raises(ValueError, match="termination"):
        get_engine("sim").run(_wl([1], [1]), FixedK(1, 1), termination="model")


def test_engine_protocol_run_and_profile():
    eng = get_engine("sim", timing=T, kv_bytes_per_token=114688)
    w = _wl(np.full(50, 20), np.arange(1, 51))
    res = eng.run(w, FixedK(8, 3))
    assert isinstance(res, RunResult) and res.meta["engine"] == "sim" and res.meta["termination"] == "dataset"
    assert [r["id"] for r in res.requests] == [str(i) for i in range(50)]
    assert all(r["finish_step"] is not None and r["output_len"] == r["ref_output_len"] for r in res.requests)
    assert res.log["kv_bytes"][0] == res.log["kv_tokens"][0] * 114688
    assert res.requests_per_s == pytest.approx(50 / res.log["duration_s"].sum())
    assert res.output_tokens_per_s == pytest.approx(sum(range(1, 51)) / res.log["duration_s"].sum())
    capped = eng.run(w, FixedK(8, 3), max_tokens=10)
    assert sum(r["truncated"] for r in capped.requests) == 40
    prof = eng.profile(prefill_tokens=[16, 64, 256], decode_batches=[1, 4, 8], context_lens=[64], repeats=2)
    for name in ("alpha_p", "beta_p", "alpha_d", "beta_d"):
        assert getattr(prof.timing, name) == pytest.approx(getattr(T, name), rel=1e-9, abs=1e-12)
    noisy = get_engine("sim", timing=T, seed=1).profile(noise=0.05)
    assert noisy.timing.alpha_d != T.alpha_d and noisy.timing.r2_decode > 0.9


def test_metrics_on_hand_case_and_engine_agnostic():
    res = sim.simulate(2, 1, workload=_wl([3, 5, 7, 2, 4], [1, 3, 2, 4, 2]), timing=T)
    cy = metrics.cycles(res.log, warmup=0, require_full=False)
    # decode phases: [2], [4], [6,7]; the last is the drain (no prefill after it)
    assert cy.total == 3 and cy.start_step.tolist() == [2, 4]
    assert cy.X0.tolist() == [14, 10] and cy.Xmax.tolist() == [14, 10] and cy.supY.tolist() == [0, 0]
    assert cy.refill.tolist() == [3, 1]
    tl = metrics.phase_timeline(res.log)
    assert [(ph, b) for ph, _, _, b in tl] == [
        ("prefill", 3),
        ("decode", 2),
        ("prefill", 1),
        ("decode", 2),
        ("prefill", 1),
        ("decode", 2),
    ]
    assert tl[-1][2] == pytest.approx(res.log["duration_s"].sum())
    th = metrics.throughput_summary(res.log)
    assert th["completed"] == 5 and th["output_tokens"] == 12 and th["prefill_steps"] == 4
    assert th["mean_decode_batch"] == pytest.approx(7 / 4)
    # the same numbers from a StepLog appended record by record (how real engines log)
    log = StepLog()
    for rec in res.log.records():
        log.append(StepRecord(**{k: v for k, v in rec.items()}))
    assert metrics.throughput_summary(log) == th
    big = sim.simulate(32, 8, 0.02, input_lens=50, steps=20000, seed=1, timing=T)
    a = metrics.memory_summary(big.log)
    b = metrics.memory_summary(big.columns)
    assert a == b and a["cycles"] > 100
    x = big.log["kv_tokens"]
    cyc = metrics.cycles(big.log)
    for s, e, x0, xm in zip(cyc.start_step[:20], cyc.end_step[:20], cyc.X0[:20], cyc.Xmax[:20]):
        assert x0 == x[s - 1] and xm == max(x[s - 1], x[s : e + 1].max())


def test_cli_simulate_json(capsys):
    from pdlib.cli import main

    rc = main(
        [
            "simulate",
            "--N",
            "64",
            "--k",
            "12",
            "--p",
            "0.0067",
            "--mean-input",
            "300",
            "--steps",
            "20000",
            "--seed",
            "0",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "E_X0",
        "E_Xmax",
        "E_supY",
        "requests_per_s",
        "cycles",
        "theory_E_X0",
        "theory_kappa",
        "theory_E_Xmax",
        "E_X0_err_pct",
    ):
        assert key in out
    assert out["cycles"] > 100 and abs(out["E_X0_err_pct"]) < 3
    rc = main(["simulate", "--N", "8", "--k", "8", "--p", "0.01", "--mean-input", "10"])
    assert rc == 2
