"""Every notebook runs with its own default parameters, as a user pressing "Run All" in
JupyterLab would: no parameter injected, the kernel started in ``notebooks/``. Results land
under ``$PDLIB_OUTPUTS_DIR`` (a temporary folder here), never under ``notebooks/``.

Notebook 06's default mode profiles now: it launches a local tiny vLLM server on 127.0.0.1
(real ``vllm serve``), so it is the slow one.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem != "00_index")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_with_its_defaults(name, tmp_path, monkeypatch, data_dir):
    papermill = pytest.importorskip("papermill")
    if name.startswith("06"):
        pytest.importorskip("vllm")
    from pdlib.grid import kernel_name
    out = tmp_path / "outputs"
    monkeypatch.setenv("PDLIB_OUTPUTS_DIR", str(out))
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PDLIB_NONINTERACTIVE", "1")     # static tables instead of widgets
    before = {p for p in (ROOT / "notebooks").rglob("*")}
    executed = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(executed), parameters={},
                               kernel_name=kernel_name(), cwd=str(ROOT / "notebooks"), progress_bar=False)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written, f"{name} wrote nothing under PDLIB_OUTPUTS_DIR"
    assert {p for p in (ROOT / "notebooks").rglob("*")} == before, "a notebook wrote into notebooks/"
