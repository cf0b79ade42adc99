"""notebooks/05_memory_breakdown.ipynb executed by papermill on CPU with a tiny grid."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.notebooks
def test_memory_breakdown_notebook_runs(tmp_path):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "out"
    pm.execute_notebook(str(ROOT / "notebooks" / "05_memory_breakdown.ipynb"), str(tmp_path / "05.ipynb"),
                        parameters={"batch_sizes": [1, 2], "seq_lens": [8, 12], "repeats": 1, "device": "cpu",
                                    "output_dir": str(out)}, kernel_name="python3", cwd=str(ROOT / "notebooks"),
                        progress_bar=False)
    for name in ("breakdown_stacked", "measured_vs_calculated", "kv_growth"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000
    profs = sorted(out.glob("breakdown_b*_s*.json"))
    assert len(profs) == 4
    p = json.loads(profs[0].read_text())
    kv = p["measurements"]["kv_cache"]
    assert kv["measured_bytes"] == kv["formula_bytes_cached_tokens"]


def test_memory_breakdown_notebook_committed_clean():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ROOT / "notebooks" / "05_memory_breakdown.ipynb", as_version=4)
    nbformat.validate(nb)
    assert "parameters" in nb.cells[0].metadata.get("tags", [])
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
