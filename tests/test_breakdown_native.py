"""profile_memory(engine="native") on CPU: pdlib's paged KV pool, measured against the formula."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_native_engine_breakdown(tiny_qwen3_dir):
    from conftest import TINY_QWEN3

    from pdlib.memprof import profile_memory
    B, P, T = 2, 12, 4
    r = profile_memory(str(tiny_qwen3_dir), engine="native", prompt_length=P, max_tokens=T, batch_size=B,
                       dtype="float32", device="cpu", repeats=1)
    kv = r["measurements"]["kv_cache"]
    per_token = 2 * TINY_QWEN3["num_hidden_layers"] * TINY_QWEN3["num_key_value_heads"] * TINY_QWEN3["head_dim"] * 4
    assert kv["kv_bytes_per_token"] == kv["kv_bytes_per_token_theory"] == per_token
    page = 16
    pool_tokens = B * math.ceil((P + T + 1) / page) * page + page          # + the engine's scratch page
    assert kv["measured_bytes"] == pool_tokens * per_token
    # the last decode step holds every request's prompt + all but its final token (exact, no page rounding)
    assert kv["held_peak_tokens"] == B * (P + T - 1)
    assert kv["held_peak_bytes"] == per_token * B * (P + T - 1)
    assert r["model_info"]["engine"] == "native" and r["model_info"]["generated_length"] == T
    assert r["memory_breakdown"]["model_weights_gb"] * 1e9 == 4 * r["model_info"]["num_parameters"]
    assert r["memory_breakdown"]["activations_gb"] > 0
    assert r["gpu_info"]["devices"] is None and "CPU" in r["null_reasons"]["gpu_info.devices"]
