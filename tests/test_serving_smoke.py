"""Serving profiler without a server: config, workload generation (exact token lengths under
the real Qwen3 tokenizer, prefix sharing), file formats, samplers' no-GPU path, CLI errors."""
from __future__ import annotations

import csv
import json

import pytest

from pdlib.serving import config as sc
from pdlib.serving.workload import (
    PromptBuilder,
    build_workload,
    load_tokenizer,
    read_workload,
    write_workload,
)


@pytest.fixture(scope="module")
def tokenizer(qwen3_dir):
    return load_tokenizer(qwen3_dir)


@pytest.fixture(scope="module")
def builder(tokenizer):
    return PromptBuilder(tokenizer)


def test_config_env_and_overrides():
    cfg = sc.from_env(env={})
    assert cfg == sc.ServingConfig()
    assert cfg.input_lens == (128, 512, 2048) and cfg.prefix_modes == ("low", "high")
    env = {"VLLM_URL": "http://127.0.0.1:9/", "INPUT_LENS": "16, 32", "PREFIX_MODES": "HIGH",
           "N_PER_CONDITION": "3", "GPU_INDICES": "0,1", "REQUEST_TIMEOUT": "2.5", "RUN_TAG": "x"}
    cfg = sc.from_env(env=env, n_per_condition=5)
    assert cfg.vllm_url == "http://127.0.0.1:9" and cfg.input_lens == (16, 32)
    assert cfg.prefix_modes == ("high",) and cfg.gpu_indices == (0, 1) and cfg.request_timeout == 2.5
    assert cfg.n_per_condition == 5 and cfg.run_tag == "x"
    with pytest.raises(ValueError, match="INPUT_LENS"):
        sc.from_env(env={"INPUT_LENS": "12,abc"})
    with pytest.raises(ValueError, match="PREFIX_MODES='medium': must be one or more of low, high"):
        sc.from_env(env={"PREFIX_MODES": "medium"})


def test_prompts_have_exact_token_lengths_and_high_mode_shares_a_prefix(tokenizer, builder, tmp_path):
    cfg = sc.ServingConfig(input_lens=(17, 200), output_lens=(8, 32), concurrencies=(1, 4),
                           prefix_modes=("low", "high"), n_per_condition=3)
    recs = build_workload(cfg, builder)
    assert len(recs) == 2 * 2 * 2 * 2 * 3
    assert len({r["request_id"] for r in recs}) == len(recs)
    by_cond = {}
    for r in recs:
        ids = tokenizer.encode(r["prompt"], add_special_tokens=False)   # re-tokenize independently
        assert len(ids) == r["input_len"], r["request_id"]
        by_cond.setdefault(r["condition"], []).append(ids)
    for cond, prompts in by_cond.items():
        assert len(prompts) == 3
        r0 = next(r for r in recs if r["condition"] == cond)
        n_shared = r0["shared_prefix_len"]
        if r0["prefix_mode"] == "high":
            assert n_shared == round(0.75 * r0["input_len"]) > 0
            assert all(p[:n_shared] == prompts[0][:n_shared] for p in prompts)
            assert len({tuple(p[n_shared:]) for p in prompts}) == 3       # distinct suffixes
        else:
            assert n_shared == 0
            assert len({tuple(p[:4]) for p in prompts}) == 3              # no common start
    # different conditions do not share a prefix
    highs = [p[0] for c, p in by_cond.items() if c.startswith("in200") and c.endswith("high")]
    assert len({tuple(p[:8]) for p in highs}) == len(highs)
    # file round trip
    path = write_workload(recs, tmp_path / "workload.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(recs)
    assert set(json.loads(lines[0])) == {"request_id", "condition", "input_len", "output_len", "concurrency",
                                         "prefix_mode", "shared_prefix_len", "prompt"}
    assert read_workload(path) == recs
    assert build_workload(cfg, builder) == recs                               # deterministic per seed


def test_token_id_prompts():
    b = PromptBuilder(None, vocab_size=500)
    cfg = sc.ServingConfig(input_lens=(5, 40), output_lens=(4,), concurrencies=(2,), n_per_condition=2)
    recs = build_workload(cfg, b)
    for r in recs:
        assert isinstance(r["prompt"], list) and len(r["prompt"]) == r["input_len"]
        assert all(100 <= t < 500 for t in r["prompt"])
    highs = [r["prompt"] for r in recs if r["condition"] == "in40_out4_c2_high"]
    assert highs[0][:30] == highs[1][:30] and highs[0][30:] != highs[1][30:]


def test_bad_workload_lines_name_file_line_and_field(tmp_path):
    p = tmp_path / "w.jsonl"
    good = {"request_id": "a", "condition": "c", "input_len": 3, "output_len": 2, "concurrency": 1,
            "prefix_mode": "low", "shared_prefix_len": 0, "prompt": [1, 2, 3]}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "request_id": "b", "output_len": 0}) + "\n")
    with pytest.raises(ValueError, match=r"w\.jsonl:2: record b: field 'output_len'"):
        read_workload(p)
    p.write_text(json.dumps({k: v for k, v in good.items() if k != "prompt"}) + "\n")
    with pytest.raises(ValueError, match=r"w\.jsonl:1: record a: missing field 'prompt'"):
        read_workload(p)
    p.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"w\.jsonl:1: not JSON"):
        read_workload(p)


def test_gpu_sampler_records_nvml_absence_or_samples(tmp_path):
    import time

    from pdlib.serving.samplers import GPU_FIELDS, GpuSampler, nvml_probe
    s = GpuSampler((0,), tmp_path / "gpu.csv", interval_ms=20).start()
    time.sleep(0.2)
    s.stop()
    with open(tmp_path / "gpu.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(GPU_FIELDS)
    probe = nvml_probe((0,))
    assert probe["available"] == s.available
    if s.available:
        assert len(rows) >= 2 and all(int(r["mem_used_bytes"]) > 0 for r in rows)
    else:
        assert len(rows) == 1 and rows[0]["note"].startswith("NVML") and rows[0]["mem_used_bytes"] == ""
        assert "NVML" in probe["reason"]


def test_prometheus_parser_on_vllm_format():
    from pdlib.serving.samplers import cache_info, kv_row, parse_prometheus
    text = ('# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n'
            '# TYPE vllm:kv_cache_usage_perc gauge\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="tiny"} 0.125\n'
            'vllm:num_requests_running{engine="0",model_name="tiny"} 3.0\n'
            'vllm:cache_config_info{block_size="32",engine="0",num_gpu_blocks="128"} 1.0\n')
    m = parse_prometheus(text)
    row = kv_row(m)
    assert row["kv_cache_usage_perc"] == 0.375 and row["num_requests_running"] == 3.0
    assert row["num_requests_waiting"] == ""
    assert cache_info(m)["num_gpu_blocks"] == "128"


def test_cli_workload_offline_and_unreachable_server(qwen3_dir, tmp_path, capsys):
    from pdlib.cli import main
    out = tmp_path / "w.jsonl"
    rc = main(["serve-profile", "workload", "--offline", "--tokenizer", str(qwen3_dir), "-o", str(out),
               "--input-lens", "10", "--output-lens", "4", "--concurrencies", "1,2", "--n-per-condition", "2",
               "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["requests"] == 8 and res["prompt_kind"] == "text"
    assert len(read_workload(out)) == 8
    from pdlib.serving.server import free_port
    rc = main(["serve-profile", "requests", str(out), "-o", str(tmp_path / "t.csv"),
               "--url", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach server" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_config_checks_every_value():
    """NaN/inf/negative timeouts, zero lengths, bad URLs: refused, the message names the field
    (config) or the variable (environment)."""
    for field, bad in [("request_timeout", float("nan")), ("request_timeout", float("inf")), ("request_timeout", 0),
                       ("input_lens", (0,)), ("concurrencies", ()), ("n_per_condition", 1.5),
                       ("metrics_interval_ms", 0), ("vllm_url", "localhost:8000"), ("run_tag", "a/b"),
                       ("prefix_modes", ("medium",)), ("seed", -1)]:
        with pytest.raises(ValueError, match=f"^{field} must be"):
            sc.ServingConfig(**{field: bad})
    with pytest.raises(ValueError, match=r"^REQUEST_TIMEOUT='nan': must be a finite number"):
        sc.from_env(env={"REQUEST_TIMEOUT": "nan"})
    assert sc.ServingConfig(request_timeout="2.5").request_timeout == 2.5


@pytest.mark.parametrize("argv, flag", [
    (["run", "--request-timeout", "nan"], "--request-timeout"),
    (["run", "--request-timeout", "-3"], "--request-timeout"),
    (["run", "--concurrencies", "0,4"], "--concurrencies"),
    (["run", "--n-per-condition", "many"], "--n-per-condition"),
    (["run", "--url", "127.0.0.1:8000"], "--url"),
    (["run", "--metrics-interval-ms", "0"], "--metrics-interval-ms"),
    (["requests", "w.jsonl", "-o", "t.csv", "--request-timeout", "inf"], "--request-timeout"),
    (["sample", "-o", "g.csv", "--duration", "nan"], "--duration"),
])
def test_cli_refuses_bad_options_in_one_line(argv, flag, capsys):
    from pdlib.cli import main
    rc = main(["serve-profile", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"error: {flag} must be" in err


def test_run_sync_inside_a_running_loop():
    """The notebook path: run_sync from a thread whose event loop is running (Jupyter)."""
    import asyncio

    from pdlib.serving.requests import run_sync

    async def work(x):
        await asyncio.sleep(0.01)
        return x + 1

    async def cell():
        return run_sync(lambda: work(1))
    assert run_sync(lambda: work(0)) == 1
    assert asyncio.run(cell()) == 2

    async def boom():
        raise KeyError("inner")

    async def cell_boom():
        return run_sync(boom)
    with pytest.raises(KeyError, match="inner"):
        asyncio.run(cell_boom())


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.notebooks
def test_notebook_default_mode_profiles_now(tmp_path, qwen3_dir):
    """Notebook 06 as shipped (no run_dir, no vllm_url: launch a tiny local vLLM, profile,
    plot), executed by papermill, whose kernel runs an event loop."""
    import time
    from pathlib import Path

    pm = pytest.importorskip("papermill")
    pytest.importorskip("vllm")
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "06_serving_memory_pressure.ipynb"
    out, runs = tmp_path / "06.ipynb", tmp_path / "runs"
    t0 = time.monotonic()
    pm.execute_notebook(str(nb), str(out), parameters={"output_dir": str(runs)}, kernel_name="python3",
                        cwd=str(nb.parent), progress_bar=False)
    elapsed = time.monotonic() - t0
    cells = json.loads(out.read_text())["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
    (run_dir,) = runs.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert manifest["status"] == "complete" and summary["overall"]["n"] == summary["overall"]["n_ok"] == 32
    assert elapsed < 300, elapsed
