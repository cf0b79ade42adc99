"""The CPU decode step of a Llama-family decoder without transformers' module stack.

On the CPU a decode step of a small model is mostly per-call overhead, not arithmetic: the tiny
Qwen3's two decoder layers take ~3.1 ms of a ~20 ms batch-32 step through transformers' modules
for a few MFLOP, ~2.7 ms this way (benchmarks/native_vs_vllm_step.py, docs/benchmarks.md).
``FusedDecode`` runs the same layer equations directly on the model's own weights:

    h = embed(ids)
    per layer:  a = rms(h, ln1);  q, k, v = split(a @ [Wq; Wk; Wv]^T + b)     (one GEMM)
                q, k = rms(q, q_norm), rms(k, k_norm)                          (Qwen3 only)
                q, k = rope(q, k; cos, sin at the positions)                   (the model's rotary_emb)
                write k, v into the paged cache; o = paged attention(q)        (attention.py, torch)
                h = h + o @ Wo^T;  m = rms(h, ln2);  g, u = split(m @ [Wg; Wu]^T)   (one GEMM)
                h = h + (act(g) * u) @ Wd^T
    return rms(h, norm)

with RMSNorm, rotate-half RoPE and the residual order exactly as transformers' Llama / Qwen2 /
Qwen3 / Mistral modules compute them (``modeling_llama.py``, ``modeling_qwen3.py``); the fused
QKV and gate-up weights are concatenated copies (taken at build time), packed for oneDNN like
every CPU linear (``cpu_linear``). Used for decode on CPU with the torch attention backend only;
prefill, CUDA and other architectures keep the transformers path. ``unsupported`` says why a
model cannot use it; tests/test_native_cpu_decode.py checks it against the transformers path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import decode_torch, store_kv
from .cpu_linear import packed_linear

#: model types whose decoder layers follow the Llama layout (same names, same equations)
LLAMA_FAMILY = ("llama", "qwen2", "qwen3", "mistral")


def unsupported(decoder: nn.Module, config) -> str | None:
    """Why ``FusedDecode`` cannot run ``decoder`` (None: it can)."""
    if getattr(config, "model_type", None) not in LLAMA_FAMILY:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {LLAMA_FAMILY}"
    if any(t != "full_attention" for t in (getattr(config, "layer_types", None) or ())):
        return "sliding-window layers"
    if getattr(config, "use_sliding_window", False) or (config.model_type == "mistral" and config.sliding_window):
        return "sliding-window attention"
    need = ("embed_tokens", "layers", "norm", "rotary_emb")
    if any(not hasattr(decoder, n) for n in need):
        return f"decoder lacks one of {need}"
    for layer in decoder.layers:
        a, m = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if a is None or m is None or not all(hasattr(a, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) \
                or not all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return "a decoder layer without the Llama attention / MLP projections"
    return None


def _rms(norm: nn.Module):
    """transformers' RMSNorm (LlamaRMSNorm, Qwen3RMSNorm): fp32 statistics, weight times the result."""
    w, eps = norm.weight.detach(), norm.variance_epsilon

    def f(x):
        dt = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return w * x.to(dt)
    return f


def _fused(*layers: nn.Linear, pack: bool = True):
    """One linear over the concatenated weights (packed when ``pack`` and oneDNN can), its output
    sizes and the bytes of the copies."""
    w = torch.cat([lin.weight.detach() for lin in layers], 0)
    biases = [lin.bias for lin in layers]
    b = None if all(x is None for x in biases) else torch.cat(
        [x.detach() if x is not None else torch.zeros(lin.out_features, dtype=w.dtype, device=w.device)
         for x, lin in zip(biases, layers)])
    f = packed_linear(w, b) if pack else None
    nbytes = w.numel() * w.element_size() + (0 if b is None else b.numel() * b.element_size())
    sizes = [lin.out_features for lin in layers]
    if f is None:
        return (lambda x, _w=w, _b=b: F.linear(x, _w, _b)), sizes, nbytes
    return f, sizes, nbytes + f.packed_bytes


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class FusedDecode:
    """``__call__(input_ids [B], positions [B], cache, slots [B], block_table, context_lens)`` ->
    the final hidden states [B, hidden] of one decode step. ``pack``: the fused weights through
    oneDNN (``cpu_linear.packed_linear``), else ``F.linear``. ``extra_bytes``: the fused copies."""

    def __init__(self, decoder: nn.Module, config, pack: bool = True):
        why = unsupported(decoder, config)
        if why is not None:
            raise ValueError(f"FusedDecode: {why}")
        self.embed, self.rotary, self.norm = decoder.embed_tokens, decoder.rotary_emb, _rms(decoder.norm)
        self.layers, self.extra_bytes = [], 0
        for idx, layer in enumerate(decoder.layers):
            a, m = layer.self_attn, layer.mlp
            qkv, qkv_sizes, b1 = _fused(a.q_proj, a.k_proj, a.v_proj, pack=pack)
            gate_up, gu_sizes, b2 = _fused(m.gate_proj, m.up_proj, pack=pack)
            self.extra_bytes += b1 + b2
            self.layers.append({
                "idx": getattr(a, "layer_idx", idx), "ln1": _rms(layer.input_layernorm),
                "ln2": _rms(layer.post_attention_layernorm), "qkv": qkv, "qkv_sizes": qkv_sizes,
                "q_norm": _rms(a.q_norm) if getattr(a, "q_norm", None) is not None else None,
                "k_norm": _rms(a.k_norm) if getattr(a, "k_norm", None) is not None else None,
                "o": a.o_proj, "gate_up": gate_up, "gu_sizes": gu_sizes, "down": m.down_proj, "act": m.act_fn,
                "head_dim": a.head_dim, "scaling": a.scaling})

    def __call__(self, input_ids, positions, cache, slots, block_table, context_lens) -> torch.Tensor:
        B = input_ids.shape[0]
        h = self.embed(input_ids)                                       # [B, hidden]
        cos, sin = self.rotary(h[:, None], positions[:, None])          # [B, 1, D]
        for L in self.layers:
            D = L["head_dim"]
            q, k, v = L["qkv"](L["ln1"](h)).split(L["qkv_sizes"], -1)
            q, k, v = q.view(B, -1, D), k.view(B, -1, D), v.view(B, -1, D)
            if L["q_norm"] is not None:
                q, k = L["q_norm"](q), L["k_norm"](k)
            q = q * cos + _rotate_half(q) * sin                         # [B, Hq, D] with cos [B, 1, D]
            k = k * cos + _rotate_half(k) * sin
            k_cache, v_cache = cache.layer_views(L["idx"])
            store_kv(k_cache, v_cache, k, v, slots)
            o = decode_torch(q[:, :, None], k_cache, v_cache, block_table, context_lens, L["scaling"])
            h = h + L["o"](o.reshape(B, -1))
            g, u = L["gate_up"](L["ln2"](h)).split(L["gu_sizes"], -1)
            h = h + L["down"](L["act"](g) * u)
        return self.norm(h)
