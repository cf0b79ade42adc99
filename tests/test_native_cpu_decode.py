"""The native runner's CPU decode without transformers' module stack (``cpu_decode.FusedDecode``):
the same hidden states and greedy tokens as the transformers path, for every Llama-family layout
it accepts (Qwen3 with q/k norms, Qwen2 with QKV biases, Llama with GQA, packed or not), and
the reason when a model cannot use it."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pdlib.engines.native import NativeEngine
from pdlib.engines.native.attention import AttnContext, set_context
from pdlib.engines.native.cpu_decode import unsupported

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

BASE = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
CONFIGS = {
    "qwen3": {"model_type": "qwen3", "head_dim": 16, **BASE},
    "qwen2": {"model_type": "qwen2", **BASE},                                   # q/k/v biases
    "llama": {"model_type": "llama", **BASE, "rope_theta": 5e5},
    "llama-pack-off": {"model_type": "llama", **BASE},
}


def _engine(config, pack=True, **kw):
    return NativeEngine(dict(config), weights="random", dtype="fp32", device="cpu", kv_capacity_tokens=2048,
                        seed=3, cpu_packed_linear=pack, **kw)


def _run(runner, steps=4):
    """Prefill 5 prompts of different lengths, then ``steps`` decode steps: (tokens, the next step's
    final hidden states through the fused path (None when off) and through transformers, on the
    same cache state)."""
    rids = [("t", i) for i in range(5)]
    prompts = [[(7 * i + 3 * j) % 500 + 1 for j in range(5 + 4 * i)] for i in range(5)]
    for rid, p in zip(rids, prompts):
        runner.cache.allocate(rid, len(p) + steps + 1)
    toks = [runner.prefill(rids, prompts)]
    pos = np.array([len(p) for p in prompts], dtype=np.int64)
    for _ in range(steps):
        toks.append(runner.decode(rids, toks[-1], pos))
        pos = pos + 1
    slots = runner.to_device(np.concatenate([runner.cache.slots(r, p, p + 1) for r, p in zip(rids, pos)]))
    bt = runner.to_device(runner.cache.block_table(rids), torch.int32)
    cl = runner.to_device(pos + 1, torch.int32)
    ids, p_t = toks[-1], runner.to_device(pos)
    with torch.inference_mode():     # both write the same K/V into the same slots, then attend
        fused = None if runner.fused_decode is None else runner.fused_decode(ids, p_t, runner.cache, slots, bt, cl)
        set_context(AttnContext(runner.cache, False, slots, runner.backend, block_table=bt, context_lens=cl))
        hf = runner.decoder(input_ids=ids[:, None], position_ids=p_t[:, None], use_cache=False).last_hidden_state[:, -1]
        set_context(None)
    runner.cache.reset()
    return torch.stack(toks).tolist(), fused, hf


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_decode_matches_transformers(name):
    pack = not name.endswith("pack-off")
    fused = _engine(CONFIGS[name], pack=pack)
    plain = _engine(CONFIGS[name], pack=pack, cpu_fused_decode=False)
    assert fused.describe()["cpu_fused_decode"] is True, fused.describe()
    assert plain.describe()["cpu_fused_decode"] is False and plain.runner.fused_decode is None
    assert fused.memory()["fused_decode_bytes"] > 0 and plain.memory()["fused_decode_bytes"] == 0
    toks, h_fused, h_hf = _run(fused.runner)
    assert h_fused.shape == h_hf.shape == (5, BASE["hidden_size"])
    torch.testing.assert_close(h_fused, h_hf, rtol=1e-5, atol=1e-5)
    assert toks == _run(plain.runner)[0]                     # same greedy tokens, step by step


def test_fused_decode_comparison_can_fail():
    """The comparison above is not vacuous: the fused QKV / gate-up weights are copies taken at
    build time, so a gate weight changed afterwards (seen by the unpacked transformers path only)
    shows up as a hidden-state difference."""
    eng = _engine(CONFIGS["qwen3"], pack=False)
    with torch.no_grad():
        eng.runner.decoder.layers[1].mlp.gate_proj.weight.mul_(2.0)
    _, h_fused, h_hf = _run(eng.runner)
    assert not torch.allclose(h_fused, h_hf, atol=1e-3)


def test_fused_decode_off_says_why():
    eng = _engine(CONFIGS["qwen3"])
    cfg = eng.runner.hf_config
    sliding = type(cfg)(**{**cfg.to_dict(), "layer_types": ["sliding_attention"] * cfg.num_hidden_layers})
    assert "sliding" in unsupported(eng.runner.decoder, sliding)

    class Other:
        model_type = "gpt2"
    assert "gpt2" in unsupported(eng.runner.decoder, Other())
