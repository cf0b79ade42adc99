"""Length-aware theory (pdlib.theory.lengths) against the simulator on the shipped paired data.

Targets (issue 14): E[X0] within 3 %, E[Xmax] within 5 %, E[sup Y] within 20 % of the
simulated steady state; throughput at k_star_lengths >= 99.5 % of the simulator's best fixed k
and the theory's throughput within 3 % of the simulator's. The simulator runs here are shorter
than the benchmark's 1.2e6 steps (benchmarks/length_model.py): each memory cell runs 4e5 steps
(seed 1), where two batch-means standard errors of the simulated E[X0] are <= 0.2 % at N = 64
and <= 0.6 % at N = 256, theta = 0.8 (E[sup Y]: 1-12 %); the tolerance is the target plus
2 standard errors. sup Y below 0.5 % of X0 (azure-code: a few tokens) is compared in absolute
terms (within 0.5 % of X0). Throughput sweeps run 1e5 steps per k with common random numbers
(seed 3); the best k's throughput is flat to < 0.3 % around its optimum.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlib import metrics, sim, theory
from pdlib.theory import lengths as LM
from pdlib.theory.lengths_core import binom_sf
from pdlib.theory.lengths_validity import ks_geometric, spearman

# the shipped workloads, as the grid loads them (params/datasets/<name>.yaml)
SPECS = ["alpaca", "sharegpt", "longbench", "azure-conv", "azure-code", "burstgpt", "sharegpt-stats"]
REGIMES = {
    "h200": theory.TimingModel(1.28e-3, 2.49e-5, 8.92e-3, 4.59e-5),
    "rtx6000": theory.TimingModel(4.69e-3, 5.01e-5, 1.04e-2, 1.04e-4),
    "balanced": sim.DEFAULT_TIMING,
    "prefill_heavy": theory.TimingModel(0.2, 1e-4, 8e-3, 1e-4),
}


@pytest.fixture(scope="module")
def workloads(data_dir):
    from pdlib.params import load_cell

    out = {}
    for name in SPECS:
        w = load_cell(name, "tiny-qwen3", "sim", data_dir=data_dir).load_workload()   # Qwen3 tokenizer
        out[name] = (np.asarray(w.input_lens), np.asarray(w.output_lens))
    return out


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("n,k", [(1, 1), (5, 2), (63, 1), (63, 6), (63, 62), (255, 128), (1023, 820)])
def test_binom_sf_matches_direct_sum(n, k):
    q = np.concatenate([[0.0, 1.0], np.linspace(1e-4, 1 - 1e-4, 301)])
    i = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in i])
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = logc + i * np.log(q[:, None]) + (n - i) * np.log1p(-q[:, None])
    lp = np.where(np.isnan(lp), -np.inf, lp)
    direct = np.exp(lp)[:, k:].sum(axis=1)
    direct[0], direct[1] = 0.0, 1.0
    np.testing.assert_allclose(binom_sf(n, k, q), direct, atol=1e-12, rtol=1e-9)


def test_validity_helpers():
    rng = np.random.default_rng(0)
    g = rng.geometric(0.01, 200_000)
    assert ks_geometric(g) < 0.005
    assert ks_geometric(np.full(1000, 100)) > 0.5            # constant: far from geometric
    x = rng.normal(size=5000)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -x ** 3) == pytest.approx(-1.0)
    assert abs(spearman(x, rng.normal(size=5000))) < 0.05
    assert spearman([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(5 / 6)   # ties: average ranks


def test_results_carry_validity_and_json():
    rng = np.random.default_rng(1)
    L = rng.geometric(0.01758, 20_000)
    I = np.full(L.size, 17)
    m = theory.memory_model_lengths(64, 12, I, L)
    d = json.loads(m.to_json())
    names = {v["name"]: v for v in d["paper_validity"]}
    assert names["one_completion_per_step"]["holds"] is False          # N*p = 1.1
    assert names["one_completion_per_step"]["value"] == pytest.approx(64 / L.mean())
    assert names["short_inputs"]["holds"] is False                      # p*mu_L = 17/56.9 = 0.30 > 0.1
    assert names["geometric_outputs"]["holds"] is True
    assert math.isnan(names["inputs_independent"]["value"])            # constant inputs
    assert {v["name"] for v in d["validity"]} >= {"fixed_point_converged", "few_single_token", "enough_pairs"}
    assert all(v["holds"] for v in d["validity"])
    t = theory.throughput_lengths(12, 64, **sim.DEFAULT_TIMING.as_kwargs(), input_lens=I, output_lens=L)
    assert json.loads(t.to_json())["paper_validity"][0]["name"] == "one_completion_per_step"
    # a correlated, non-geometric workload is flagged as such
    Ic = rng.integers(10, 1000, 5000)
    Lc = np.where(Ic > 500, 10, 200)
    flags = {v.name: v for v in theory.paper_validity(64, 1 / Lc.mean(), Ic.mean(), Ic, Lc)}
    assert not flags["geometric_outputs"].holds and not flags["inputs_independent"].holds
    assert flags["inputs_independent"].value < -0.8


def test_geometric_agrees_with_paper_and_large_inputs_evaluate():
    # small p, large N: the paper's D(theta) is the model's limit (paper's own accuracy ~2 %)
    for th in (0.1, 0.2, 0.5):
        N = 256
        k = round(th * N)
        m = theory.memory_model_lengths(N, k, p=0.002, mu_L=100.0)
        assert m.E_X0 == pytest.approx(float(theory.E_X0(N, k / N, 0.002, 100.0)), rel=0.02)
    # N = 1024 and 10^5 pairs evaluate (the <= 1 s target is measured by benchmarks/length_model_speed.py,
    # not asserted here: a timing on a shared CI machine is not a test)
    rng = np.random.default_rng(2)
    I, L = rng.integers(1, 3000, 100_000), np.minimum(rng.geometric(1 / 300, 100_000), 4000)
    m = theory.memory_model_lengths(1024, 205, I, L)
    assert np.isfinite(m.E_X0) and m.E_X0 > 0


# --------------------------------------------------------------------------- simulator pairing


def test_simulator_draws_pairs_together_by_default():
    rng = np.random.default_rng(3)
    I = rng.integers(1, 2000, 4000)
    L = np.maximum(1, 2100 - I + rng.integers(0, 50, I.size))     # strongly negatively correlated
    joint = sim.simulate(16, 4, input_lens=I, output_lens=L, num_requests=3000, seed=5, record_steps=False)
    indep = sim.simulate(16, 4, input_lens=I, output_lens=L, num_requests=3000, seed=5, record_steps=False,
                         pairing="independent")
    rj, ri = joint.requests, indep.requests
    pairs = set(zip(I.tolist(), L.tolist()))
    assert all((a, b) in pairs for a, b in zip(rj["input_len"].tolist(), rj["output_len"].tolist()))
    assert spearman(rj["input_len"], rj["output_len"]) < -0.9
    assert abs(spearman(ri["input_len"], ri["output_len"])) < 0.1
    np.testing.assert_array_equal(np.sort(rj["output_len"]), np.sort(ri["output_len"]))   # same output draws
    assert joint.meta["pairing"] == "joint" and indep.meta["pairing"] == "independent"
    with pytest.raises(ValueError, match="pairing='independent'"):
        sim.simulate(16, 4, input_lens=I[:10], output_lens=L, steps=100)
    with pytest.raises(ValueError, match="pairing must be"):
        sim.simulate(16, 4, input_lens=I, output_lens=L, steps=100, pairing="zip")


# --------------------------------------------------------------------------- memory vs simulator

MEM_STEPS = 400_000


def _check_memory(name, I, L, law, N, th, steps=MEM_STEPS, geo_p=None):
    k = max(1, round(th * N))
    m = theory.memory_model_lengths(N, k, law=law, cycles=4096 if N <= 64 else 1024)
    if geo_p is None:
        res = sim.simulate(N, k, input_lens=I, output_lens=L, steps=steps, seed=1, record_steps=False)
    else:
        res = sim.simulate(N, k, geo_p, input_lens=int(I), steps=steps, seed=1, record_steps=False)
    cy = metrics.cycles(res.columns)
    X0, Xm, sY = cy.X0.mean(), cy.Xmax.mean(), cy.supY.mean()
    se = {key: metrics.batch_means_se(getattr(cy, key)) for key in ("X0", "Xmax", "supY")}
    where = f"{name} N={N} k={k}"
    assert abs(m.E_X0 - X0) <= 0.03 * X0 + 2 * se["X0"], (where, m.E_X0, X0)
    assert abs(m.E_Xmax - Xm) <= 0.05 * Xm + 2 * se["Xmax"], (where, m.E_Xmax, Xm)
    tol_y = max(0.20 * sY + 2 * se["supY"] + 2 * m.se_supY, 0.005 * X0)
    assert abs(m.E_supY - sY) <= tol_y, (where, m.E_supY, sY)


@pytest.mark.parametrize("name", list(SPECS))
def test_memory_model_matches_simulator_on_shipped_data(workloads, name):
    I, L = workloads[name]
    law = theory.length_law(I, L)
    # longbench outputs are all 7 tokens: every cycle is 6 steps and refills all N slots (deterministic
    # apart from the inputs), so 4e4 steps give the same 2-se accuracy as 4e5 elsewhere
    steps = 40_000 if name == "longbench" else MEM_STEPS
    for N in (64, 256):
        for th in (0.1, 0.2, 0.5, 0.8):
            _check_memory(name, I, L, law, N, th, steps=steps)


@pytest.mark.parametrize("name", ["sharegpt", "azure-conv"])
def test_supY_cycle_transition_fixes_theta_half(workloads, name):
    """N = 64, theta = 0.5: the raw cohort law (i.i.d. history, ``transitions=0``) missed E[sup Y]
    by -40 % (sharegpt: 24 pairs, 10 at the 256 cap) and +23 % (azure-conv) because its last cycle
    boundary is not a completion time of its own slots; the exact cycle transitions of
    ``sample_cycles_cohorts`` bring both within the 20 % target. Simulator: 1.2e6 steps, seed 1
    (E[sup Y] 123 +- 10 and 597 +- 15 tokens, 2 batch-means se); model: its default sampler,
    seed 0 (2 se 4 and 8 tokens). Tolerance = 20 % + 2 se of each, so a Monte Carlo excursion
    of the simulator or the model cannot fail it by chance; the transitions must also beat the raw law."""
    I, L = workloads[name]
    law = theory.length_law(I, L)
    N, k = 64, 32
    m = theory.memory_model_lengths(N, k, law=law)
    res = sim.simulate(N, k, input_lens=I, output_lens=L, steps=1_200_000, seed=1, record_steps=False)
    cy = metrics.cycles(res.columns)
    sY, se = float(cy.supY.mean()), metrics.batch_means_se(cy.supY)
    assert abs(m.E_supY - sY) <= 0.20 * sY + 2 * se + 2 * m.se_supY, (name, m.E_supY, sY, se, m.se_supY)
    raw = float(LM.sample_cycles_cohorts(LM.stationary(N, k, law), transitions=0)[2].mean())
    assert abs(raw - sY) > abs(m.E_supY - sY), (name, raw, m.E_supY, sY)
    assert abs(m.E_Xmax - cy.Xmax.mean()) <= 0.05 * cy.Xmax.mean()


def test_memory_model_matches_simulator_geometric():
    p, mu = 0.01758, 17
    law = theory.geometric_law(p, mu)
    for N in (64, 256):
        for th in (0.1, 0.5, 0.8):
            _check_memory("geometric", mu, None, law, N, th, geo_p=p)


# --------------------------------------------------------------------------- throughput vs simulator

THR_STEPS = 100_000


def _sim_throughput(cols, tm):
    c = dict(cols)
    c["duration_s"] = np.where(c["is_prefill"], tm.alpha_p + tm.beta_p * c["tokens"],
                               tm.alpha_d + tm.beta_d * c["batch_size"])
    return metrics.throughput_summary(c, warmup="auto")["requests_per_s"]


@pytest.mark.parametrize("name", list(SPECS))
def test_k_star_lengths_and_throughput_vs_simulator_sweep(workloads, name):
    I, L = workloads[name]
    N = 64
    law = theory.length_law(I, L)
    cols, stats, st = {}, {}, None
    steps = 20_000 if name == "longbench" else THR_STEPS
    for k in range(1, N):
        r = sim.simulate(N, k, input_lens=I, output_lens=L, steps=steps, seed=3, record_steps=False)
        cols[k] = r.columns
        st = LM.stationary(N, k, law, init=st)
        stats[k] = st
    for reg, tm in REGIMES.items():
        thr_sim = {k: _sim_throughput(c, tm) for k, c in cols.items()}
        thr_th = {k: LM.throughput_lengths(k, N, **tm.as_kwargs(), law=law, stat=stats[k]).throughput for k in stats}
        k_len = max(thr_th, key=thr_th.get)
        best = max(thr_sim, key=thr_sim.get)
        assert thr_sim[k_len] >= 0.995 * thr_sim[best], (name, reg, k_len, best)
        assert thr_th[k_len] == pytest.approx(thr_sim[k_len], rel=0.03), (name, reg, k_len)
        assert thr_th[best] == pytest.approx(thr_sim[best], rel=0.03), (name, reg, best)
        if reg == "h200":
            ks = theory.k_star_lengths(N, **tm.as_kwargs(), law=law)
            assert ks.k == k_len and ks.throughput == pytest.approx(thr_th[k_len])
            assert ks.paper_k == theory.k_star(N, 1 / L.mean(), tm.alpha_p, tm.alpha_d, tm.beta_d, tm.beta_p,
                                               I.mean()).k
