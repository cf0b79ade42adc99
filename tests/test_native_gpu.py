"""Native engine on CUDA (skipped without a GPU): CUDA-graph decode gives the same tokens and
the same per-step KV log as eager decode and as HF ``generate`` (fp32), events time every step,
and the allocator figures are reported."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdlib.engines.native import NativeEngine
from pdlib.policy import FixedK
from pdlib.workload import Request, Workload

pytestmark = pytest.mark.gpu

SMALL = dict(model_type="qwen3", vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2)


def _workload():
    rng = np.random.default_rng(0)
    ins, outs = [5, 40, 17, 3, 60, 12, 33, 8, 21, 2], [9, 4, 12, 6, 3, 10, 7, 5, 8, 11]
    return Workload("gpu", [Request(f"r{i}", a, b, rng.integers(1, 511, a).tolist())
                            for i, (a, b) in enumerate(zip(ins, outs))])


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_graph_decode_matches_eager_and_hf(backend):
    kw = dict(weights="random", dtype="fp32", device="cuda", kv_capacity_tokens=4096, max_batch=8, seed=1,
              attn_backend=backend, page_size=256 if backend == "auto" else 16)
    g = NativeEngine(SMALL, cuda_graphs=True, **kw)
    e = NativeEngine(SMALL, cuda_graphs=False, **kw)
    assert g.describe()["cuda_graphs"] and not e.describe()["cuda_graphs"]
    wl = _workload()
    rg, re_ = g.run(wl, FixedK(6, 2)), e.run(wl, FixedK(6, 2))
    assert [r["output_ids"] for r in rg.requests] == [r["output_ids"] for r in re_.requests]
    for col in ("phase", "batch_size", "tokens", "kv_tokens"):
        assert list(rg.log[col]) == list(re_.log[col])
    assert np.all(rg.log["duration_s"] > 0)
    ref = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(e.hf_config),
                                                        attn_implementation="sdpa").cuda().eval()
    ref.load_state_dict(e.model.state_dict())
    for req, r in zip(wl.requests, rg.requests):
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=req.output_len,
                                           min_new_tokens=req.output_len, eos_token_id=None, pad_token_id=0)
        with torch.no_grad():
            out = ref.generate(torch.tensor([req.prompt_ids], device="cuda"), generation_config=gc)
        assert r["output_ids"] == out[0, req.input_len:].tolist(), req.id
    m = rg.meta["memory"]
    assert m["activation_peak_bytes"] is not None and m["allocator_overhead_bytes"] >= 0


def test_profile_on_gpu():
    eng = NativeEngine(SMALL, weights="random", dtype="bf16", device="cuda", kv_capacity_tokens=65536, max_batch=32)
    prof = eng.profile(prefill_tokens=[64, 256, 1024], decode_batches=[1, 8, 32], context_lens=[64, 512], repeats=3)
    assert len(prof.decode) == 18 and prof.timing.alpha_d > 0
