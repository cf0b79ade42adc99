"""``pdlib run`` one-liners: flags -> one grid cell (no YAML to write), checked against the real
notebooks' parameter cells; a model given as a Hugging Face id or a model folder."""
from __future__ import annotations

import json

import pytest
import yaml

from pdlib.cli import main
from pdlib.cli.oneliner import parse_value
from pdlib.params import load_cell, load_grid, load_spec


@pytest.mark.parametrize("text,value", [("32", 32), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True), ("True", True),
                                        ("False", False), ("None", None), ("null", None), ("[1, 2, 4]", [1, 2, 4]),
                                        ("dataset", "dataset"), ("", ""), ("a: b: c", "a: b: c"), ("'7'", "7")])
def test_values_are_yaml_scalars_like_papermill(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def _run(capsys, *argv):
    rc = main(["run", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_problem_is_listed_at_once(capsys, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("- not a mapping\n")
    rc, out, err = _run(capsys, "--dataset", "no-such-set", "--model", "tiny-qwen3", "--engine", "warp",
                        "-p", "N=thirty", "-p", "bogus=1", "-p", "num_requests=2.5", "-p", "novalue", "-f", str(f),
                        "--notebook", "02", "--outputs", str(tmp_path / "out"))
    lines = err.strip().splitlines()
    assert rc == 2 and not out and lines[0] == "pdlib run: error: 7 problem(s) with the one-liner:"
    body = "\n".join(lines[1:])
    for want in ("-f " + str(f) + ": must be a mapping", "-p 'novalue': expected KEY=VALUE",
                 "--dataset no-such-set: unknown dataset (params/datasets has: alpaca,",
                 "--engine warp: unknown engine (params/engines has:", "parameter 'N' must be int, got str 'thirty'",
                 "parameter 'bogus' is not a parameter of 02_kstar_vs_khat (known: N,",
                 "parameter 'num_requests' must be int, got float 2.5"):
        assert sum(want in line for line in lines[1:]) == 1, (want, body)
    assert not (tmp_path / "out").exists()         # nothing written before the checks pass


def test_other_refusals(capsys, tmp_path):
    rc, _, err = _run(capsys, "--grid", "params/grid-test.yaml", "--dataset", "alpaca")
    assert rc == 2 and "either --grid FILE or a one-liner" in err
    rc, _, err = _run(capsys, "--dataset", "alpaca", "--model", "./no/such/folder", "--notebook", "0",
                      "-p", "output_dir=x", "--outputs", str(tmp_path))
    assert rc == 2 and "--notebook '0': matches 00_index, 01_profiling" in err
    assert "--model './no/such/folder' must be one folder name" in err and "or a Hugging Face id" in err
    assert "parameter 'output_dir' cannot be given: set by pdlib run (use --outputs)" in err
    cfg_only = tmp_path / "cfg-only"                 # a config.json and no tokenizer: fine for a trace, not for text
    cfg_only.mkdir()
    (cfg_only / "config.json").write_text('{"model_type": "qwen3", "num_hidden_layers": 2}')
    rc, _, err = _run(capsys, "--dataset", "alpaca", "--model", str(cfg_only), "--engine", "sim")
    assert rc == 2 and "the folder has no tokenizer files, which the text dataset 'alpaca' needs" in err


def test_hf_id_and_model_folder_without_a_yaml(qwen3_dir):
    hf = load_spec("model", "Qwen/Qwen2.5-7B-Instruct")
    assert hf["hf_id"] == hf["tokenizer"] == "Qwen/Qwen2.5-7B-Instruct" and hf["weights"] == "pretrained"
    assert hf["name"] == "Qwen--Qwen2.5-7B-Instruct"
    cell = load_cell("alpaca", "Qwen/Qwen2.5-7B-Instruct", "native")
    assert cell.model_ref() == "Qwen/Qwen2.5-7B-Instruct" and cell.workload_spec()["tokenizer"] == hf["hf_id"]
    local = load_spec("model", str(qwen3_dir))
    assert local["config_path"] == str(qwen3_dir.resolve()) and local["weights"] == "random"
    assert local["tokenizer"] == str(qwen3_dir.resolve()) and local["dtype"] == "bfloat16"
    c = load_cell("alpaca", str(qwen3_dir), "sim")
    # Qwen3-1.7B: 2 (K, V) x 28 layers x 8 KV heads x head_dim 128 x 2 bytes (bf16) = 114,688 B per token
    assert c.kv_bytes_per_token() == 2 * 28 * 8 * 128 * 2 == 114688
    assert c.engine_config()["kv_bytes_per_token"] == 114688
    with pytest.raises(FileNotFoundError, match="or a Hugging Face id"):
        load_spec("model", "not-a-model")


def test_the_grid_it_writes(capsys, tmp_path, qwen3_dir, monkeypatch):
    from pdlib.cli import build_parser
    from pdlib.cli.oneliner import build_grid, write_grid
    from pdlib.grid import cell_dir
    f = tmp_path / "params.yaml"
    f.write_text("N: 16\nks: [1, 2, 3]\ntermination: model\n")
    argv = ["run", "--dataset", "alpaca", "--model", "Qwen/Qwen2.5-7B-Instruct", "--engine", "vllm", "-f", str(f),
            "-p", "N=32", "-p", "num_requests=500", "--notebook", "02_kstar_vs_khat"]
    args = build_parser().parse_args(argv)
    grid = build_grid(args, tmp_path)
    assert grid.name == "run-alpaca-Qwen--Qwen2.5-7B-Instruct-vllm" and grid.notebooks == ["02_kstar_vs_khat"]
    assert grid.cells[0].params == {"N": 32, "ks": [1, 2, 3], "termination": "model", "num_requests": 500,
                                    "dataset": "alpaca", "model": "Qwen/Qwen2.5-7B-Instruct", "engine": "vllm"}
    path = write_grid(args, tmp_path)
    assert path == tmp_path / grid.name / "grid.yaml"
    again = load_grid(path)
    assert [c.params for c in again.cells] == [c.params for c in grid.cells] and again.notebooks == grid.notebooks
    assert again.notebooks_dir is None and again.index_notebook == "00_index"
    assert cell_dir(tmp_path, again, again.cells[0]) == tmp_path / grid.name / "alpaca" / "Qwen--Qwen2.5-7B-Instruct" / "vllm"
    assert again.cells[0].name == "alpaca/Qwen--Qwen2.5-7B-Instruct/vllm"
    # a model folder, given relative to the current folder: the cell holds its absolute path
    monkeypatch.chdir(qwen3_dir.parent)
    args = build_parser().parse_args(["run", "--dataset", "azure-conv", "--model", f"./{qwen3_dir.name}"])
    g = build_grid(args, tmp_path)
    assert g.name == "run-azure-conv-qwen3-1.7b-sim" and g.cells[0].params["model"] == str(qwen3_dir.resolve())
    assert g.notebooks == ["01_profiling", "02_kstar_vs_khat", "03_memory_validation"]
    assert yaml.safe_load(path.read_text())["axes"][0][0]["N"] == 32


@pytest.mark.notebooks
def test_a_one_liner_runs_the_notebook(capsys, tmp_path, qwen3_dir):
    rc, out, err = _run(capsys, "--dataset", "synthetic", "--model", str(qwen3_dir), "--engine", "sim",
                        "-p", "N=4", "-p", "num_requests=16", "-p", "n_k=3", "-p", "max_output_tokens=32",
                        "--notebook", "02", "--outputs", str(tmp_path), "--no-progress", "--json")
    res = json.loads(out)
    assert rc == 0 and res["ran"] == 1 and res["failed"] == 0, err
    assert res["grid"] == "run-synthetic-qwen3-1.7b-sim"
    d = tmp_path / res["grid"] / "synthetic" / "qwen3-1.7b" / "sim"
    given = json.loads((d / "cell.json").read_text())["notebooks"]["02_kstar_vs_khat"]["parameters"]
    assert given["N"] == 4 and given["num_requests"] == 16 and given["model"] == str(qwen3_dir.resolve())
    assert (d / "02_kstar_vs_khat.html").is_file() and list(d.glob("*_results.json"))
