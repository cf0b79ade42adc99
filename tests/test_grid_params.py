"""params/: every YAML resolves, every grid cell points at existing files and notebooks, and
a cell turns into the workload spec and engine config the other packages accept."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdlib.models import materialize_config
from pdlib.params import load_cell, load_grid, load_spec
from pdlib.paths import notebooks_dir

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"


@pytest.mark.parametrize("grid", sorted(p.name for p in PARAMS.glob("grid-*.yaml")))
def test_grid_files_resolve(grid, data_dir):
    g = load_grid(PARAMS / grid)
    assert g.cells
    for nb in g.notebooks + g.once + [g.index_notebook]:
        assert (notebooks_dir() / f"{nb}.ipynb").is_file(), nb
    for c in g.cells:
        cell = load_cell(c.params["dataset"], c.params["model"], c.params["engine"], data_dir=data_dir)
        assert cell.impl in ("sim", "native", "vllm")


def test_gpu_grid_is_qwen3_on_the_native_runner():
    # the default grid's shape (issue 15) is checked in tests/test_findings.py
    g = load_grid(PARAMS / "grid-gpu.yaml")
    assert {c.params["model"] for c in g.cells} == {"qwen3-1.7b"}
    assert all(load_spec("engine", c.params["engine"])["engine"] == "native" for c in g.cells)


@pytest.mark.parametrize("name", sorted(p.stem for p in (PARAMS / "datasets").glob("*.yaml")))
def test_dataset_specs_are_valid(name, data_dir):
    from pdlib.data import DatasetSpec
    cell = load_cell(name, "tiny-qwen3", "sim", data_dir=data_dir, num_requests=8, max_output_tokens=32)
    spec = cell.workload_spec()
    assert spec["num_requests"] == 8 and spec["max_output_tokens"] == 32
    DatasetSpec.from_any(spec)                      # unknown keys or bad values raise
    if "path" in spec:
        assert Path(spec["path"]).exists(), spec["path"]


def test_model_and_engine_config(data_dir):
    cell = load_cell("alpaca", "tiny-qwen3", "native", data_dir=data_dir)
    cfg = cell.engine_config()
    assert cfg["model"]["model_type"] == "qwen3" and cfg["weights"] == "random" and cfg["dtype"] == "float32"
    assert cfg["device"] in ("cpu", "cuda")
    # 2 x 2 layers x 2 KV heads x 32 x 4 B
    assert cell.kv_bytes_per_token() == 2 * 2 * 2 * 32 * 4
    big = load_cell("alpaca", "qwen3-1.7b", "native", data_dir=data_dir)
    assert big.kv_bytes_per_token() == 114688
    assert big.engine_config()["model"] == str(data_dir / "models" / "qwen3-1.7b")
    sim = load_cell("alpaca", "tiny-qwen3", "sim", data_dir=data_dir).engine_config()
    assert sim["timing"].alpha_d == 0.008 and sim["kv_bytes_per_token"] == 1024


def test_unknown_names_are_clear(data_dir):
    with pytest.raises(FileNotFoundError, match="no dataset named 'nope'.*alpaca"):
        load_cell("nope", "tiny-qwen3", "sim", data_dir=data_dir)
    with pytest.raises(FileNotFoundError, match="no engine named"):
        load_cell("alpaca", "tiny-qwen3", "tpu", data_dir=data_dir)


def test_materialize_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path))
    d = materialize_config("m", {"model_type": "qwen3", "hidden_size": 64})
    conf = json.loads((d / "config.json").read_text())
    assert conf["architectures"] == ["Qwen3ForCausalLM"] and conf["hidden_size"] == 64


def test_every_notebook_parameter_declares_its_type():
    """The grid checks values against these (``# type: int|None``) before running anything."""
    import papermill
    for nb in sorted(notebooks_dir().glob("*.ipynb")):
        untyped = [k for k, v in papermill.inspect_notebook(str(nb)).items() if v["inferred_type_name"] == "None"]
        assert not untyped, f"{nb.name}: parameters without '# type:': {untyped}"


@pytest.mark.parametrize("nb", sorted(p.name for p in notebooks_dir().glob("*.ipynb")))
def test_every_parameter_line_is_seen_by_papermill(nb):
    """papermill reads a parameter only when its line parses (a help comment holding ``=`` makes it
    skip the line silently, and a grid setting it then fails): every top-level assignment of each
    notebook's parameters cell is one of papermill's parameters."""
    import ast

    from pdlib.grid import notebook_parameters
    path = notebooks_dir() / nb
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        pytest.skip(f"{nb} has no parameters cell")
    tree = ast.parse("".join(cells[0]["source"]))
    assigned = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    assert assigned and assigned == set(notebook_parameters(path)), nb


@pytest.mark.parametrize("grid_file", sorted(p.name for p in PARAMS.glob("grid-*.yaml")))
def test_shipped_grids_pass_their_notebooks_checks(grid_file):
    """Every shipped grid's parameters are declared by its notebooks with fitting types (what
    ``pdlib run`` checks before it starts): a grid that names a parameter papermill cannot see fails here."""
    from pdlib.grid import check_grid
    declared = check_grid(load_grid(PARAMS / grid_file))
    assert declared
