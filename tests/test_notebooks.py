"""Every notebook executed through papermill on the test grid (params/grid-test.yaml:
alpaca prompts tokenized with the Qwen3 tokenizer, the simulator engine), and the JSON it
produced checked against pdlib.theory — not only that it ran (recommenders style: a
``notebooks`` fixture mapping names to paths)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from pdlib import theory

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
SEED_FIGURES = ["{d}_throughput_vs_k", "{d}_profiling_results", "{d}_input_length_distribution",
                "{d}_output_length_distribution", "{d}_online_kstar_convergence", "{d}_memory_validation"]


@pytest.fixture(scope="module")
def notebooks() -> dict[str, Path]:
    return {p.stem: p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}


@pytest.fixture(scope="module")
def grid_out(tmp_path_factory, data_dir):
    from pdlib.grid import run_grid
    out = tmp_path_factory.mktemp("outputs")
    run = run_grid(ROOT / "params" / "grid-test.yaml", outputs=out, progress=False)
    return run, out


@pytest.fixture(scope="module")
def cell_dir(grid_out) -> Path:
    return grid_out[1] / "test" / "alpaca" / "tiny-qwen3" / "sim"


@pytest.fixture(scope="module")
def res(cell_dir) -> dict:
    return json.loads((cell_dir / "alpaca_results.json").read_text())


@pytest.mark.parametrize("name", ["00_index", "01_profiling", "02_kstar_vs_khat", "03_memory_validation",
                                  "04_gpu_budget"])
def test_notebook_committed_clean(notebooks, name):
    nb = nbformat.read(notebooks[name], as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["language_info"]["name"] == "python"
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{name}: committed with outputs"


def test_grid_ran_every_notebook(grid_out, notebooks):
    run, out = grid_out
    assert run.failed == []
    ran = {nb for _, nb in run.ran}
    assert ran == {"01_profiling", "02_kstar_vs_khat", "03_memory_validation", "04_gpu_budget"}
    assert (out / "test" / "00_index.html").is_file()
    assert set(notebooks) >= ran | {"00_index"}


def test_profiling_results(res, cell_dir):
    prof = res["profiling"]
    saved = json.loads((cell_dir / "alpaca_profiling.json").read_text())
    fit = theory.fit_timing([r["tokens"] for r in saved["prefill"]], [r["seconds"] for r in saved["prefill"]],
                            [r["batch"] for r in saved["decode"]], [r["seconds"] for r in saved["decode"]])
    for k in ("alpha_p", "beta_p", "alpha_d", "beta_d", "r2_prefill", "r2_decode"):
        assert prof["timing"][k] == pytest.approx(getattr(fit, k), rel=1e-9)
    # the sim profiles its own timing model (params/engines/sim.yaml) with 2 % noise
    assert prof["timing"]["alpha_d"] == pytest.approx(0.008, rel=0.1)
    assert prof["timing"]["beta_d"] == pytest.approx(1e-4, rel=0.3)
    assert prof["timing"]["r2_decode"] > 0.9
    L = prof["lengths"]
    assert L["input"]["count"] == L["output"]["count"] == 96
    assert prof["p"] == pytest.approx(1.0 / L["output"]["mean"])


def test_kstar_results(res, cell_dir):
    k, t = res["kstar"], res["kstar"]["timing"]
    timing = theory.TimingModel(**{x: t[x] for x in ("alpha_p", "beta_p", "alpha_d", "beta_d")})
    # k* is the theory's k_star for the fitted timing and the offline p
    ks = theory.k_star(k["N"], k["p_offline"], **timing.as_kwargs(), mu_L=k["mu_L"])
    assert k["k_star"] == ks.k and k["fallback_used"] == ks.fallback_used
    assert k["offline_sample_size"] == 4 * 8          # offline_p_multiplier x kstar_update_interval
    rows = {r["k"]: r["requests_per_s"] for r in k["sweep"]}
    assert k["k_star"] in rows
    assert k["k_hat"] == max(rows, key=lambda x: (rows[x], -x))
    assert k["gap_pct"] == pytest.approx(100 * (rows[k["k_hat"]] - rows[k["k_star"]]) / rows[k["k_hat"]])
    assert k["gap_pct"] >= 0
    # the engine is the simulator itself: its curve and the twin's agree to the fit's noise
    for r, s in zip(k["sweep"], k["sim"]):
        assert s["requests_per_s"] == pytest.approx(r["requests_per_s"], rel=0.05)
    th = theory.throughput(np.array(k["theory_curve"]["k"]), k["N"], k["p_all"], **timing.as_kwargs(), mu_L=k["mu_L"])
    np.testing.assert_allclose(k["theory_curve"]["requests_per_s"], th)
    hist = k["online"]["history"]
    assert len(hist) >= 2 and hist[0][1] == pytest.approx(k["p_offline"])
    assert all(h[0] % 8 == 0 for h in hist)
    # p with its 95 % interval and the range of k* it implies
    piv, kr = k["p_interval"], k["k_star_range"]
    assert piv["p_lo"] < k["p_offline"] < piv["p_hi"] and piv["sample_size"] == k["offline_sample_size"]
    for end in ("p_lo", "p_hi"):
        assert kr[f"k_star_at_{end}"] == theory.k_star(k["N"], piv[end], **timing.as_kwargs(), mu_L=k["mu_L"]).k
    assert kr["k_star_min"] <= k["k_star"] <= kr["k_star_max"]
    assert k["k_star_lengths"]["k"] in rows and k["requests"]["used"] == 96 and k["requests"]["warning"] is None
    assert {v["name"] for v in k["validity"]["paper"]} >= {"one_completion_per_step", "geometric_outputs"}
    for r in k["sweep"]:
        lo, hi = r["steady_requests_per_s_ci"]
        assert lo <= r["steady_requests_per_s"] <= hi
    mb = k["memory_bound"]
    assert mb["N_star_prop3"] == theory.N_star_prop3(mb["capacity_tokens"], k["k_star"] / k["N"], k["p_offline"],
                                                     k["mu_L"], 0.01)
    tl = json.loads((cell_dir / "pd_timeline_alpaca.json").read_text())
    assert set(tl["phase"]) == {"prefill", "decode"} and len(tl["step"]) == len(tl["kv_tokens"])
    assert isinstance(json.loads((cell_dir / "truncated_samples_alpaca.json").read_text()), list)


def test_memory_results(res):
    m = res["memory"]
    th = m["theory"]
    N, k, p, mu_L = th["N"], th["k"], th["p"], th["mu_L"]
    assert th["E_X0"] == pytest.approx(theory.E_X0(N, k / N, p, mu_L))
    assert th["kappa"] == pytest.approx(theory.kappa(p, mu_L))
    meas, err = m["measured"], m["errors_pct"]
    assert m["cycles"] >= 10
    # signed errors, prediction/measured - 1 (issue 14: the old |measured - theory|/theory lost the sign)
    assert err["X0"] == pytest.approx(100 * (th["E_X0"] / meas["X0"] - 1))
    assert err["Xmax"] == pytest.approx(100 * (th["E_Xmax"] / meas["Xmax"] - 1))
    assert err["kappa"] == pytest.approx(100 * (th["kappa"] / meas["supY"] - 1))
    # a verdict per quantity from the 95 % interval of the signed error, never from the point estimate
    for q in ("X0", "Xmax", "kappa"):
        lo, hi = m["errors_ci_pct"][q]
        assert lo <= err[q] <= hi
        assert m["verdicts"][q] == ("pass" if -m["thresholds"][q] < lo and hi < m["thresholds"][q]
                                    else "fail" if lo >= m["thresholds"][q] or hi <= -m["thresholds"][q]
                                    else "inconclusive")
    assert m["pass"] == {q: v == "pass" for q, v in m["verdicts"].items()}
    assert m["all_pass"] == all(m["pass"].values())
    w = m["warmup"]
    assert w["rule"] == "MSER-5 on X0" and w["dropped"] >= 1 and w["reason"]
    assert m["requests"] == {"requested": 96, "used": 96, "warning": None}
    la = m["length_aware"]
    assert la["E_X0"] > 0 and set(la["verdicts"]) == {"X0", "Xmax", "supY"}
    names = {v["name"] for v in m["validity"]["paper"]}
    assert {"one_completion_per_step", "short_inputs", "geometric_outputs", "inputs_independent"} <= names
    assert m["engine_bytes"] is None and "simulator" in m["engine_bytes_note"]     # the sim measures no bytes
    kc = m["k_choice"]                                 # k = k* from an estimated p: its interval and k* range
    assert kc["k_star"] == k and kc["k_star_min"] <= k <= kc["k_star_max"] and kc["p_lo"] < kc["p"] < kc["p_hi"]
    # engine = simulator: the engine in tokens matches its twin exactly (policy fidelity 0 %)
    assert m["engine_tokens"]["X0"] == pytest.approx(m["sim_real"]["X0"])
    assert all(abs(v) < 1e-9 for v in m["errors_vs_sim_pct"].values())
    audit = {r["source"]: r["E_X0_tokens"] for r in m["formula_audit"]}
    assert audit["seed 000 printed (1-theta)^2"] == pytest.approx(theory.E_X0_seed000_misprint(N, k / N, p, mu_L))
    # the corrected form is closer to Monte Carlo than the seed's printed one
    mc = audit["Monte Carlo (sim, geometric)"]
    assert abs(audit["corrected (1-theta)"] - mc) < abs(audit["seed 000 printed (1-theta)^2"] - mc)
    levels = [r["level"] for r in m["attribution"]]
    assert levels[:4] == ["theory", "sim, geometric lengths", "sim, real lengths", "engine, KV tokens"]


def test_figures_and_reports(cell_dir, grid_out):
    for stem in SEED_FIGURES:
        for ext in ("pdf", "png"):
            f = cell_dir / f"{stem.format(d='alpaca')}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    for nb in ("01_profiling", "02_kstar_vs_khat", "03_memory_validation"):
        html = (cell_dir / f"{nb}.html").read_text()
        assert "load_cell(" not in html          # no code cells in the report
        assert "<img" in html or "image/png" in html
    index = (grid_out[1] / "index.html").read_text()
    assert "alpaca/tiny-qwen3/sim" in index and "02_kstar_vs_khat.html" in index


def test_gpu_budget_results(grid_out):
    d = json.loads((grid_out[1] / "test" / "_global" / "gpu_budget_results.json").read_text())
    rows = {r["gpu"]: r for r in d["seed_vs_corrected"]}
    seed = d["seed_vs_corrected"][0]
    assert seed["kv_bytes_per_token"] == 196608 and seed["b_mem"] == 76      # seed 004's stated figures
    assert rows["rtx4080"]["kv_bytes_per_token"] == 114688
