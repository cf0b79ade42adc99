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
    with pytest.raises(ValueError, match="prefix_modes"):
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
