"""The explorers' callbacks (``kstar_view``, ``memory_view``: plain functions) against
``pdlib.theory``, the widgets driven by setting their values, the run's measured points read
from a result, its JSON and its results file, and the static rendering headless runs show.
(``tests/test_browser.py`` drags the same widgets in Chromium.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

from pdlib import theory
from pdlib.engines import get_engine
from pdlib.experiments import memory_cycles as mc
from pdlib.experiments import sweep
from pdlib.report import results, widgets
from pdlib.workload import Workload

TIMING = theory.TimingModel(0.05, 1e-5, 0.01, 1e-4)
T = {"alpha_p": 0.05, "beta_p": 1e-5, "alpha_d": 0.01, "beta_d": 1e-4}


@pytest.fixture(scope="module")
def lens():
    rng = np.random.default_rng(3)
    return rng.integers(20, 200, 120).astype(float), rng.geometric(0.05, 120).astype(float)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real k sweep and a real memory run on the simulator, and their results file."""
    rng = np.random.default_rng(2)
    wl = Workload.from_lengths("geo", rng.integers(20, 100, 200), rng.geometric(0.05, 200))
    eng = get_engine("sim", timing=TIMING)
    sw = sweep.kstar_experiment(eng, wl, TIMING, N=8, n_points=3, kstar_update_interval=8, offline_p_multiplier=2)
    mem = mc.memory_experiment(eng, wl, N=8, k=2, timing=TIMING, warmup=2, mc_requests=300)
    out = tmp_path_factory.mktemp("run")
    results.write_section(out, "geo", "kstar", sw)
    path = results.write_section(out, "geo", "memory", mem)
    return wl, sw, mem, path


def test_kstar_view_is_the_theory(lens):
    inp, out = lens
    v = widgets.kstar_view(16, 0.02, **T, mu_L=60.0, input_lens=inp, output_lens=out)
    ks = theory.k_star(16, 0.02, T["alpha_p"], T["alpha_d"], T["beta_d"], T["beta_p"], 60.0)
    assert (v["k_star"], v["theta"], v["fallback_used"]) == (ks.k, ks.k / 16, ks.fallback_used)
    assert v["throughput_rps"] == pytest.approx(ks.throughput, rel=1e-12)
    assert v["curve_k"] == list(range(1, 16))
    np.testing.assert_allclose(v["curve_rps"], theory.throughput(np.arange(1, 16), 16, 0.02, T["alpha_p"], T["beta_p"],
                                                                 T["alpha_d"], T["beta_d"], 60.0), rtol=1e-12)
    assert max(v["curve_rps"]) == pytest.approx(v["throughput_rps"], rel=1e-12)   # k* maximises the paper's curve
    kl = theory.k_star_lengths(16, T["alpha_p"], T["beta_p"], T["alpha_d"], T["beta_d"], inp, out)
    assert v["k_star_lengths"] == kl.k and v["curve_lengths_rps"] == pytest.approx(list(kl.curve), rel=1e-12)
    assert v["p_lengths"] == pytest.approx(1 / out.mean())
    assert "k_star_lengths" not in widgets.kstar_view(16, 0.02, **T)               # no lengths, no length-aware k*
    big = widgets.kstar_view(widgets.kstar.LENGTH_AWARE_MAX_N + 1, 0.02, **T, input_lens=inp, output_lens=out)
    assert "k_star_lengths" not in big and "not computed" in big["lengths_note"]
    with pytest.raises(ValueError, match="N must be an integer >= 2"):
        widgets.kstar_view(1, 0.02, **T)
    with pytest.raises(ValueError, match="p"):
        widgets.kstar_view(8, 1.5, **T)


def test_kstar_explorer_widgets_follow_the_sliders(runs):
    pytest.importorskip("ipywidgets")
    wl, sw, _, _ = runs
    ui = widgets.KStarExplorer(N=8, p=sw.p_offline, timing=TIMING, mu_L=sw.mu_L, input_lens=wl.input_lens,
                               output_lens=wl.output_lens, measured=sw)
    assert ui.view["k_star"] == sw.k_star                   # the notebook's k*, from the same inputs
    assert ui.view["k_star_lengths"] == sw.k_star_lengths["k"]
    assert ui.view["measured_at_N"] and ui.view["measured"]["k"] == sorted(sw.ks)
    html0 = ui.output.value
    assert f"<td>{sw.k_star}  (theta" in html0 and "<img" in html0
    ui.controls["N"].value = 64
    v = ui.view
    assert v["N"] == 64 and not v["measured_at_N"] and "the run used N = 8" in ui.output.value
    ks = theory.k_star(64, ui.controls["p"].value, TIMING.alpha_p, TIMING.alpha_d, TIMING.beta_d, TIMING.beta_p,
                       sw.mu_L)
    assert v["k_star"] == ks.k and ui.output.value != html0
    ui.controls["alpha_p"].value = ui.controls["alpha_p"].value * 10     # a dearer prefill: refill more at once
    assert ui.view["k_star"] >= ks.k


def test_measured_points_from_result_json_and_file(runs, tmp_path):
    _, sw, mem, path = runs
    a = widgets.measured_points(sw)
    assert a == widgets.measured_points(json.loads(json.dumps(sw.to_json())))
    assert a == widgets.measured_points(path) == widgets.measured_points(str(path))
    by_k = {r["k"]: r["requests_per_s"] for r in sw.sweep}
    assert dict(zip(a["k"], a["requests_per_s"])) == pytest.approx(by_k) and a["k_hat"] == sw.k_hat
    assert all(lo <= m <= hi for lo, m, hi in zip(a["steady_lo"], a["steady_rps"], a["steady_hi"]))
    m = widgets.measured_cycles(path)
    assert m == widgets.measured_cycles(mem)
    assert (m["N"], m["k"]) == (8, 2) and m["X0"] == pytest.approx(mem.validation["measured"]["X0"])
    with pytest.raises(ValueError, match="nothere_results.json not found"):
        widgets.measured_points(tmp_path / "nothere_results.json")
    only = results.write_section(tmp_path, "x", "memory", mem)
    with pytest.raises(ValueError, match=r"has no section 'kstar'"):
        widgets.measured_points(only)


def test_memory_view_is_the_theory(lens):
    inp, out = lens
    v = widgets.memory_view(16, 0.3, 0.01, 80.0, 25.0, capacity_tokens=20000, eps=0.01)
    assert (v["k"], v["theta"]) == (5, 5 / 16)               # k = round(0.3 * 16), theta = k/N for both models
    paper = theory.memory_model(16, 5, 0.01, 80.0, 25.0)
    for q in ("E_X0", "kappa", "E_Xmax", "drift", "variance"):
        assert v[q] == pytest.approx(paper[q], rel=1e-12)
    la = theory.memory_model_lengths(16, 5, p=0.01, mu_L=80.0, var_L=25.0, seed=0)
    assert (v["E_X0_lengths"], v["E_Xmax_lengths"], v["E_supY_lengths"]) == (la.E_X0, la.E_Xmax, la.E_supY)
    head = 20000 - paper["E_X0"]
    assert v["headroom_tokens"] == pytest.approx(head)
    assert v["oom_bound"] == pytest.approx(float(theory.oom_bound(head, paper["drift"], paper["variance"])))
    assert v["N_star_prop3"] == int(theory.N_star_prop3(20000, 5 / 16, 0.01, 80.0, 0.01))
    assert v["N_star_clt"] == int(theory.N_star_clt(20000, 5 / 16, 0.01, 80.0, 0.01, 25.0))
    r = widgets.memory_view(16, 0.3, 0.5, 1.0, source="run", input_lens=inp, output_lens=out)
    assert r["p"] == pytest.approx(1 / out.mean()) and r["mu_L"] == pytest.approx(inp.mean())   # not the 0.5 / 1.0
    lr = theory.memory_model_lengths(16, 5, inp, out, seed=0)
    assert r["E_X0_lengths"] == lr.E_X0 and r["E_X0"] == pytest.approx(lr.paper_E_X0, rel=1e-12)
    assert widgets.memory_view(16, 0.001, 0.01, 80.0)["k"] == 1      # k stays in 1..N-1
    for bad, msg in (({"N": 1}, "N must be"), ({"theta": 1.0}, "theta must be in"), ({"source": "csv"}, "source must be"),
                     ({"source": "run"}, "needs the run's input_lens")):
        with pytest.raises(ValueError, match=msg):
            widgets.memory_view(**{"N": 16, "theta": 0.3, "p": 0.01, "mu_L": 80.0, **bad})


def test_memory_explorer_widgets_follow_the_controls(runs):
    pytest.importorskip("ipywidgets")
    _, _, mem, path = runs
    lw = mc.lengths_workload(mem.run)
    th = mem.theory
    ui = widgets.MemoryExplorer(N=8, theta=0.25, p=th["p"], mu_L=th["mu_L"], var_L=th["var_L"],
                                input_lens=lw.input_lens, output_lens=lw.output_lens, measured=path)
    assert ui.controls["source"].value == "run" and ui.controls["p"].disabled
    assert ui.view["measured_here"] and ui.view["E_X0"] == pytest.approx(th["E_X0"], rel=1e-9)
    assert "measured X0 / Xmax" in ui.output.value and "<img" in ui.output.value
    n0 = ui.view["N_star_prop3"]
    ui.controls["capacity_tokens"].value = 4 * ui.controls["capacity_tokens"].value
    assert ui.view["N_star_prop3"] > n0 and ui.view["oom_bound"] < 1
    ui.controls["source"].value = "geometric"
    assert not ui.controls["p"].disabled and ui.view["source"] == "geometric"
    ui.controls["mu_L"].value = 2 * th["mu_L"]
    assert ui.view["E_X0"] == pytest.approx(theory.memory_model(8, 2, ui.controls["p"].value, 2 * th["mu_L"],
                                                                th["var_L"])["E_X0"], rel=1e-9)
    ui.controls["N"].value = 32
    assert not ui.view["measured_here"] and "the run used N = 8, k = 2" in ui.output.value


def test_headless_runs_render_statically(monkeypatch, runs):
    _, sw, _, path = runs
    monkeypatch.setenv("PDLIB_NONINTERACTIVE", "1")
    assert not widgets.is_interactive()
    r = widgets.kstar_explorer(N=8, p=sw.p_offline, timing=TIMING, mu_L=sw.mu_L, measured=path)
    assert isinstance(r, widgets.Rendered) and r.view["k_star"] == sw.k_star
    html = r._repr_html_()
    assert "k* (paper, Theorem 1)" in html and 'src="data:image/png;base64,' in html and "measured k̂" in html
    m = widgets.memory_explorer(N=8, theta=0.25, p=0.05, mu_L=60.0, capacity_tokens=5000)
    assert isinstance(m, widgets.Rendered) and m.view["source"] == "geometric" and m.view["capacity_tokens"] == 5000
    assert "OOM bound at the headroom" in m._repr_html_()
