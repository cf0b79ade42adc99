"""Memory breakdown profiler on CPU with the tiny 2-layer random Qwen3 (fp16)."""
from __future__ import annotations

import pytest

from pdlib import theory

pytest.importorskip("torch")
pytest.importorskip("transformers")

from pdlib.memprof import COMPONENTS, null_paths, profile_memory

B, T = 2, 4


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def prof(tiny_qwen3_dir):
    return profile_memory(str(tiny_qwen3_dir), weights="random", prompt_length=24, max_tokens=T,
                          batch_size=B, dtype="float16", device="cpu", repeats=2)


def qwen3_params(c):
    """Parameter count of a Qwen3 decoder from its config, tied embeddings counted once."""
    H, I, V, L, nh, kvh, hd = (c[k] for k in ("hidden_size", "intermediate_size", "vocab_size",
                                              "num_hidden_layers", "num_attention_heads",
                                              "num_key_value_heads", "head_dim"))
    attn = H * nh * hd + 2 * H * kvh * hd + nh * hd * H + 2 * hd       # q, k, v, o, q_norm, k_norm
    layer = attn + 3 * H * I + 2 * H                                    # mlp + two RMSNorms
    return V * H + L * layer + H                                        # embed (tied) + final norm


def test_structure_and_every_null_has_a_reason(prof):
    assert set(prof["memory_breakdown"]) == set(COMPONENTS)
    assert {"name", "dtype", "num_parameters", "prompt_length", "generated_length", "total_sequence_length",
            "batch_size"} <= set(prof["model_info"])
    assert {"num_gpus", "devices", "multi_gpu_overhead_gb"} <= set(prof["gpu_info"])
    mi = prof["model_info"]
    assert (mi["prompt_length"], mi["generated_length"], mi["batch_size"]) == (24, T, B)
    assert mi["total_sequence_length"] == 24 + T
    body = {k: v for k, v in prof.items() if k != "repeats"}
    missing = [p for p in null_paths(body) if p not in prof["null_reasons"]]
    assert missing == []
    rep = prof["repeats"]
    assert rep["n"] == 2 and len(rep["values"]) == 2 and rep["warmup_runs"] == 1
    for c in ("model_weights_gb", "kv_cache_gb", "activations_gb"):
        s = rep["spread"][c]
        assert s["n"] == 2 and s["min"] <= s["mean"] <= s["max"]
        assert prof["memory_breakdown"][c] == pytest.approx(s["mean"])


def test_kv_measured_equals_formula_exact_bytes(prof, tiny_qwen3_dir):
    from conftest import TINY_QWEN3
    kv = prof["measurements"]["kv_cache"]
    per_token = 2 * TINY_QWEN3["num_hidden_layers"] * TINY_QWEN3["num_key_value_heads"] * TINY_QWEN3["head_dim"] * 2
    assert kv["kv_bytes_per_token"] == per_token == theory.kv_bytes_per_token(TINY_QWEN3, "float16")
    S = prof["model_info"]["total_sequence_length"]
    assert kv["cached_tokens"] == S - 1                  # generate never feeds the last token back
    assert kv["measured_bytes"] == per_token * B * (S - 1) == kv["formula_bytes_cached_tokens"]
    assert kv["logical_bytes"] == kv["measured_bytes"]
    assert kv["formula_bytes_total_sequence"] == per_token * B * S
    assert prof["memory_breakdown"]["kv_cache_gb"] == pytest.approx(per_token * B * (S - 1) / 1e9, rel=1e-12)


def test_weights_equal_params_times_bytes(prof):
    from conftest import TINY_QWEN3
    n = qwen3_params(TINY_QWEN3)
    assert prof["model_info"]["num_parameters"] == n
    w = prof["measurements"]["model_weights"]
    assert w["params_x_bytes"] == 2 * n
    assert prof["memory_breakdown"]["model_weights_gb"] == pytest.approx(2 * n / 1e9, rel=1e-12)
    # the allocator cross-check: storages = parameters + the rotary buffers (fp32), nothing else
    assert w["allocator_bytes"] - w["params_x_bytes"] == w["buffers_bytes"] > 0


def test_gpu_fields_null_with_reason_on_cpu(prof):
    g = prof["gpu_info"]
    assert g["num_gpus"] == 0 and g["devices"] is None and g["multi_gpu_overhead_gb"] is None
    assert "CPU" in prof["null_reasons"]["gpu_info.devices"]
    assert "CPU" in prof["null_reasons"]["gpu_info.multi_gpu_overhead_gb"]
    assert prof["device"] == "cpu"


def test_activations_and_residual(prof):
    from conftest import TINY_QWEN3
    a = prof["measurements"]["activations"]
    assert a["forward_passes"] == T                      # one prefill + T-1 decode passes
    # the prefill pass materialises at least the MLP gate/up outputs: B*P*2*I fp16 elements
    assert a["prefill_spike_gb"] * 1e9 >= B * 24 * 2 * TINY_QWEN3["intermediate_size"] * 2
    assert a["gb"] == pytest.approx(max(a["prefill_spike_gb"], a["decode_spike_max_gb"]))
    mb = prof["memory_breakdown"]
    if mb["total_gb"] is not None:                      # Linux with /proc: peak RSS
        assert mb["framework_overhead_gb"] == pytest.approx(
            mb["total_gb"] - mb["model_weights_gb"] - mb["kv_cache_gb"] - mb["activations_gb"])
        assert prof["measurements"]["framework_overhead"]["negative"] == (mb["framework_overhead_gb"] < 0)


def test_static_cache_measures_the_preallocation(tiny_qwen3_dir):
    r = profile_memory(str(tiny_qwen3_dir), prompt_length=8, max_tokens=3, batch_size=1, dtype="float32",
                       device="cpu", repeats=1, cache="static")
    kv = r["measurements"]["kv_cache"]
    assert kv["cache_class"] == "StaticCache"
    assert kv["measured_bytes"] >= kv["formula_bytes_cached_tokens"]
    assert kv["measured_bytes"] % kv["kv_bytes_per_token"] == 0


def test_bad_inputs_are_named(tmp_path, tiny_qwen3_dir):
    with pytest.raises(FileNotFoundError, match="config.json"):
        profile_memory(str(tmp_path), device="cpu", repeats=1)
    with pytest.raises(ValueError, match="engine"):
        profile_memory(str(tiny_qwen3_dir), engine="tgi", device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        profile_memory(str(tiny_qwen3_dir), batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="dtype"):
        profile_memory(str(tiny_qwen3_dir), dtype="int3", device="cpu", max_tokens=1, repeats=1)


def test_prompt_ids_rules(tiny_qwen3_dir, qwen3_dir):
    from pdlib.memprof.model import prompt_ids
    ids, src = prompt_ids(str(tiny_qwen3_dir), "héllo", None, 2048)
    assert ids == list("héllo".encode()) and "bytes" in src
    ids2, _ = prompt_ids(str(tiny_qwen3_dir), "ab", 5, 2048)
    assert ids2 == [97, 98, 97, 98, 97]
    r1, _ = prompt_ids(str(tiny_qwen3_dir), None, 7, 2048)
    assert r1 == prompt_ids(str(tiny_qwen3_dir), None, 7, 2048)[0] and len(r1) == 7
    tok_ids, src = prompt_ids(str(qwen3_dir), "Hello world", None, 151936)
    assert "tokenizer" in src and 1 <= len(tok_ids) <= 3
    with pytest.raises(ValueError, match="vocab_size"):
        prompt_ids(str(qwen3_dir), "Hello world", None, 10)


def test_cuda_device_refused_without_cuda(tiny_qwen3_dir):
    import torch
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="needs CUDA"):
        profile_memory(str(tiny_qwen3_dir), device="cuda", repeats=1)


@pytest.mark.gpu
def test_gpu_fields_measured_on_cuda(tiny_qwen3_dir):
    r = profile_memory(str(tiny_qwen3_dir), prompt_length=32, max_tokens=8, batch_size=4, dtype="float16",
                       device="cuda", repeats=2)
    g = r["gpu_info"]
    assert g["num_gpus"] == 1 and g["devices"][0]["peak_allocated_gb"] > 0
    assert g["multi_gpu_overhead_gb"] is None and "one GPU" in r["null_reasons"]["gpu_info.multi_gpu_overhead_gb"]
    w = r["measurements"]["model_weights"]
    assert w["allocator_bytes"] - w["params_x_bytes"] == w["buffers_bytes"]
    kv = r["measurements"]["kv_cache"]
    assert kv["measured_bytes"] == kv["formula_bytes_cached_tokens"]
    mb = r["memory_breakdown"]
    assert mb["total_gb"] >= mb["model_weights_gb"] + mb["kv_cache_gb"]


def test_breakdown_owns_its_json(prof, tmp_path):
    import json

    from pdlib.memprof import SCHEMA, Breakdown
    assert list(prof) == ["schema", "memory_breakdown", "model_info", "gpu_info", "device", "measurements",
                          "repeats", "per_layer", "units", "null_reasons", "notes", "environment"]
    b = Breakdown.from_json(prof)
    assert b.to_json() == prof and b.schema == SCHEMA and b.settings is None
    f = b.write(tmp_path / "p.json")
    assert Breakdown.from_json(f) == b and json.loads(f.read_text()) == prof
    b.settings = {"batch_size": B}
    assert list(b.to_json())[-1] == "settings" and Breakdown.from_json(b.to_json()) == b
    with pytest.raises(ValueError, match="schema"):
        Breakdown.from_json({**prof, "schema": "other/1"})
    with pytest.raises(ValueError, match="missing keys"):
        Breakdown.from_json({k: v for k, v in prof.items() if k != "notes"})
