"""The findings page and docs/findings.md from a real (small) grid run: the simulator with the
published H200 / RTX PRO 6000 timing presets on real alpaca and ShareGPT prompts, notebooks 02
and 03 executed by papermill; the tables are checked against the results JSON the notebooks
wrote. Also the engine-log split of the HTML reports and the default grid's N rule."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from pdlib import verdicts
from pdlib.cli import main
from pdlib.report import findings, index, results

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
GRID = {
    "name": "findings-test", "notebooks": ["02_kstar_vs_khat", "03_memory_validation"], "once": [],
    "index_notebook": None,
    "defaults": {"kstar_update_interval": 8, "offline_p_multiplier": 4, "optimize_batch_size": True,
                 "mc_requests": 3000, "model": "qwen3-8b"},
    "axes": [[{"dataset": "alpaca", "engine": "sim-h200", "num_requests": 400, "N": 8, "n_k": 7,
               "gpu_memory_gb": 141.0, "model_memory_gb": 16.38},
              {"dataset": "sharegpt", "engine": "sim-rtxpro6000", "num_requests": 100, "N": 3, "n_k": 2,
               "gpu_memory_gb": 96.0, "model_memory_gb": 16.38}]],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    from pdlib.grid import run_grid
    d = tmp_path_factory.mktemp("findings")
    grid = d / "grid-findings-test.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    out = d / "outputs"
    r = run_grid(grid, outputs=out, progress=False)
    assert r.failed == [], r.failed
    return out


@pytest.fixture(scope="module")
def fs(run):
    return {f["dataset"]: f for f in index.findings(run, "findings-test")}


def _res(out, dataset, engine):
    return results.read_results(out / "findings-test" / dataset / "qwen3-8b" / engine, dataset)


def _steady(rows, k):
    return next(r for r in rows if r["k"] == k)["steady_requests_per_s"]


def test_gap_and_verdicts_follow_the_results(run, fs):
    res = _res(run, "alpaca", "sim-h200")
    k, m = res["kstar"], res["memory"]
    f = fs["alpaca"]
    assert f["kind"] == "digital twin" and f["N"] == 8 and f["N_star"] == k["memory_bound"]["N_star_prop3"]
    assert (f["k_star"], f["k_hat"]) == (k["k_star"], k["k_hat"])
    g, tc = f["gap"], k["throughput_ci"]                 # notebook 02's gap over paired repeats
    assert (g["gap_pct"], [g["lo"], g["hi"]], g["verdict"]) == (tc["gap_pct"], tc["gap_ci"], tc["gap_verdict"])
    gl, kl = f["gap_lengths"], k["k_star_lengths"]["k"]  # the length-aware k*: its steady-state runs
    if kl == k["k_hat"]:
        assert (gl["gap_pct"], gl["lo"], gl["hi"], gl["verdict"]) == (0.0, 0.0, 0.0, "pass")
    else:
        want = 100 * (1 - _steady(k["sweep"], kl) / _steady(k["sweep"], k["k_hat"]))
        assert gl["gap_pct"] == pytest.approx(want)
        assert gl["lo"] <= gl["gap_pct"] <= gl["hi"]
        assert gl["verdict"] == verdicts.verdict(gl["lo"], gl["hi"], findings.GAP_THRESHOLD_PCT)
    assert f["k_star_lengths"] == k["k_star_lengths"]["k"]
    for q in ("X0", "Xmax", "kappa"):
        assert f["paper"][q]["verdict"] == m["verdicts"][q]
        assert f["paper"][q]["err_pct"] == pytest.approx(m["errors_pct"][q]) if m["errors_pct"][q] is not None \
            else f["paper"][q]["err_pct"] is None
    for q in ("X0", "Xmax", "supY"):
        assert f["lengths"][q]["verdict"] == m["length_aware"]["verdicts"][q]
    assert f["bound"]["verdict"] == m["verdicts"]["bound_valid"]
    checks = [g["verdict"], *(c["verdict"] for c in f["paper"].values()), f["bound"]["verdict"]]
    assert f["verdict_paper"] == findings.combine(checks)


def test_requested_vs_used_with_the_reason(fs):
    f = fs["sharegpt"]
    assert f["requested"] == 100 and f["used"] < 100
    assert any(r.startswith("requests:") and "record" in r for r in f["reasons"])
    assert fs["alpaca"]["used"] == fs["alpaca"]["requested"] == 400


def test_index_opens_with_the_findings_and_has_no_dead_link(run, fs):
    page = (run / "index.html").read_text()
    assert page.index("<h1>Findings</h1>") < page.index("<h1>pdlib reports</h1>")
    section = page[:page.index("<h1>pdlib reports</h1>")]
    assert "gap % paper k* [95 % CI]" in section and "OOM bound valid % [CI]" in section
    assert "sim-h200" in section and "sim-rtxpro6000" in section
    assert not re.search(r"\bnan\b", section, re.IGNORECASE)
    assert "00_index.html" not in page and "No summary notebook" in page      # index_notebook: null
    for href in re.findall(r"href='([^']+)'", page):
        assert (run / href).is_file(), href
    # the p column is filled although notebook 01 did not run
    res = _res(run, "alpaca", "sim-h200")
    assert index.headline_ci(res)["p"] == pytest.approx(res["kstar"]["p_all"])


def test_cli_writes_the_findings_markdown(run, fs, tmp_path, capsys):
    md = tmp_path / "findings.md"
    assert main(["findings", "--outputs", str(run), "--grid", "findings-test", "-o", str(md)]) == 0
    text = md.read_text()
    assert "Hardware:" in text and "pdlib findings --outputs" in text and "notebooks from 20" in text
    assert re.search(r"\| alpaca \| sim-h200 \| 8 \(N\* [\d,]+, [\d,]+–[\d,]+ over p's 95 % CI\) \| 400 / 400 \|", text)
    assert "| sharegpt | sim-rtxpro6000 |" in text and not re.search(r"\bnan\b", text, re.IGNORECASE)
    first = text
    assert main(["findings", "--outputs", str(run), "--grid", "findings-test", "-o", str(md)]) == 0
    assert md.read_text() == first                       # regenerated from the results, the same
    capsys.readouterr()
    assert main(["findings", "--outputs", str(run), "--grid", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--grid nope" in err and "findings-test" in err and "Traceback" not in err


def test_gap_rule_without_steady_state_or_run():
    rows = [{"k": 2, "requests_per_s": 9.0, "steady_requests_per_s": None, "steady_requests_per_s_ci": [None, None]},
            {"k": 3, "requests_per_s": 10.0, "steady_requests_per_s": None, "steady_requests_per_s_ci": [None, None]}]
    g = findings.gap(rows, 2, 3)
    assert g["verdict"] == "inconclusive" and g["gap_pct"] == pytest.approx(10.0) and "steady" in g["reason"]
    assert findings.gap(rows, 5, 3)["reason"] == "k=5 was not run in the sweep"
    assert findings.combine(["pass", "fail", "inconclusive"]) == "fail"
    assert findings.combine(["pass", "inconclusive"]) == "inconclusive" and findings.combine([]) == "inconclusive"


def test_engine_logs_go_to_a_linked_log_file(tmp_path):
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from pdlib.grid import export_html
    vllm_line = ("\x1b[0;36m(MainProcess pid=7)\x1b[0;0m \x1b[32mINFO\x1b[0m \x1b[90m12-02 06:22:38\x1b[0m "
                 "[model.py:733] Resolved architecture: Qwen3ForCausalLM\n")
    nb = new_notebook(cells=[new_code_cell("run()", outputs=[
        new_output("stream", name="stderr", text="Triton is installed, but doesn't include CPU backend.\n"),
        new_output("stream", name="stdout", text=vllm_line + "k* = 5 for this workload\n")])])
    ipynb = tmp_path / "02.ipynb"
    nbformat.write(nb, str(ipynb))
    export_html(ipynb, tmp_path / "02.html")
    page, log = (tmp_path / "02.html").read_text(), (tmp_path / "02.log").read_text()
    assert "Resolved architecture" in log and "CPU backend" in log and "\x1b" not in log
    assert "Resolved architecture" not in page and "CPU backend" not in page
    assert "k* = 5 for this workload" in page and 'href="02.log"' in page
    assert json.loads(ipynb.read_text())["cells"][0]["outputs"][0]["name"] == "stderr"   # the .ipynb keeps all


def test_default_grid_N_is_the_memory_bound(data_dir):
    """Every digital-twin cell of params/grid-default.yaml on the length traces runs at
    min(256, N*, requests/8) (the text datasets are checked the same way by `pdlib findings
    --check-grid`; tokenizing them is slow for a test)."""
    from pdlib.cli.findings import check_grid_N
    rows = check_grid_N(ROOT / "params" / "grid-default.yaml", datasets={"azure-conv", "azure-code", "burstgpt"})
    assert len(rows) == 9
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_default_grid_is_what_issue_15_asks():
    """Every shipped dataset x the three timing presets (>= 5,000 requests asked, a full k sweep),
    and vLLM-CPU + the native runner on the tiny model (N >= 16, >= 256 requests)."""
    from pdlib.params import load_cell, load_grid
    g = load_grid(ROOT / "params" / "grid-default.yaml")
    datasets = {p.stem for p in (ROOT / "params" / "datasets").glob("*.yaml")} - {"synthetic"}
    twin = [c.params for c in g.cells if c.params["engine"].startswith("sim-")]
    assert {(p["dataset"], p["engine"]) for p in twin} == {
        (d, e) for d in datasets for e in ("sim-h200", "sim-rtxpro6000", "sim-rtx4080")}
    for p in twin:
        assert p["num_requests"] >= 5000 and p["k_search"] == "full" and p.get("ks") is None and p["N"] <= 256
        assert load_cell(p["dataset"], p["model"], p["engine"]).impl == "sim"
    real = {c.params["engine"]: c.params for c in g.cells if not c.params["engine"].startswith("sim-")}
    assert set(real) == {"vllm", "native"}
    assert all(p["model"] == "tiny-qwen3" and p["N"] >= 16 and p["num_requests"] >= 256 for p in real.values())
    assert g.notebooks == ["02_kstar_vs_khat", "03_memory_validation"]
