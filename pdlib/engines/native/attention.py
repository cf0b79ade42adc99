"""The attention function plugged into transformers (``AttentionInterface``, name ``pdlib_native``).

The model runs without a transformers cache (``use_cache=False``); each attention layer
receives the K/V of the step's new tokens (rotary already applied), writes them into
pdlib's paged cache at ``ctx.slot_mapping`` and attends:

* prefill (one packed sequence ``[1, T_total]`` of the admitted prompts, positions restarting
  per prompt): causal attention within each prompt only (``cu_seqlens``) — no padding;
* decode (``[B, 1]``): each row attends to its own pages (``block_table``) up to
  ``context_lens`` (which include the token written in this step).

Step metadata travels in a module-level context (as in nano-vllm) so the same tensors can
be captured in a CUDA graph. Backends (``config.ATTN_BACKENDS``):

* ``triton`` (``triton_attention``): the KV write and paged decode attention as Triton kernels
  (any page size; reads only each row's ``context_lens`` tokens), prefill as ``torch``;
* ``flash_attn``: ``flash_attn_varlen_func`` / ``flash_attn_with_kvcache`` with a block table
  (page_size must be a multiple of 256);
* ``torch``: SDPA per prompt, and for decode a gather of every page of the block table (the
  reference; runs anywhere).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

ATTN_NAME = "pdlib_native"


@dataclass
class AttnContext:
    cache: object                      # KVCache
    is_prefill: bool
    slot_mapping: torch.Tensor         # [tokens] int64 flat slots to write
    backend: str = "torch"
    seq_lens: list = field(default_factory=list)       # prefill, host ints
    cu_seqlens: torch.Tensor | None = None             # prefill, [b+1] int32
    max_seqlen: int = 0
    block_table: torch.Tensor | None = None            # decode, [B, P] int32
    context_lens: torch.Tensor | None = None           # decode, [B] int32


_CTX: AttnContext | None = None


def set_context(ctx: AttnContext | None) -> None:
    global _CTX
    _CTX = ctx


def store_kv(k_cache, v_cache, k, v, slot_mapping) -> None:
    """Write [tokens, kv_heads, head_dim] K/V into a layer's pages at the flat slots."""
    k_cache.view(-1, *k.shape[1:]).index_copy_(0, slot_mapping, k)
    v_cache.view(-1, *v.shape[1:]).index_copy_(0, slot_mapping, v)


def prefill_torch(q, k, v, seq_lens, scaling):
    """Causal SDPA per prompt over packed [T, H, D] tensors; returns [T, Hq, D]."""
    outs, s = [], 0
    for n in seq_lens:
        qs, ks, vs = (t[s:s + n].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=True)
        outs.append(o[0].transpose(0, 1))
        s += n
    return torch.cat(outs, 0)


def decode_torch(q, k_cache, v_cache, block_table, context_lens, scaling):
    """q [B, Hq, 1, D]; gathers each row's pages and masks positions >= context_lens."""
    B, P = block_table.shape
    page, Hkv, D = k_cache.shape[1:]
    bt = block_table.reshape(-1).long()
    k = k_cache.view(k_cache.shape[0], -1).index_select(0, bt).view(B, P * page, Hkv, D).transpose(1, 2)
    v = v_cache.view(v_cache.shape[0], -1).index_select(0, bt).view(B, P * page, Hkv, D).transpose(1, 2)
    mask = (torch.arange(P * page, device=q.device)[None, :] < context_lens[:, None].long())[:, None, None, :]
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling, enable_gqa=True)
    return o.transpose(1, 2)                                         # [B, 1, Hq, D]


def _triton():
    from . import triton_attention  # imported on first use: triton is optional
    return triton_attention


def native_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention signature: query [B, Hq, T, D], key/value [B, Hkv, T, D];
    returns ([B, T, Hq, D], None)."""
    ctx = _CTX
    if ctx is None:
        raise RuntimeError(f"attention {ATTN_NAME!r} called outside a native-engine step (no context set)")
    B, Hq, T, D = query.shape
    Hkv = key.shape[1]
    k_cache, v_cache = ctx.cache.layer_views(module.layer_idx)
    k_new = key.transpose(1, 2).reshape(B * T, Hkv, D)
    v_new = value.transpose(1, 2).reshape(B * T, Hkv, D)
    if scaling is None:
        scaling = D ** -0.5
    if ctx.backend == "triton":
        _triton().store_kv(k_cache, v_cache, k_new, v_new, ctx.slot_mapping)
    else:
        store_kv(k_cache, v_cache, k_new, v_new, ctx.slot_mapping)
    if ctx.is_prefill:
        q = query.transpose(1, 2).reshape(B * T, Hq, D)
        if ctx.backend == "flash_attn":
            from flash_attn import flash_attn_varlen_func
            o = flash_attn_varlen_func(q, k_new, v_new, cu_seqlens_q=ctx.cu_seqlens, cu_seqlens_k=ctx.cu_seqlens,
                                       max_seqlen_q=ctx.max_seqlen, max_seqlen_k=ctx.max_seqlen,
                                       softmax_scale=scaling, causal=True)
        else:
            o = prefill_torch(q, k_new, v_new, ctx.seq_lens, scaling)
        return o.view(B, T, Hq, D), None
    if ctx.backend == "triton":
        o = torch.empty((B, 1, Hq, D), dtype=query.dtype, device=query.device)
        q = query[:, :, 0]
        _triton().decode_attention(q if q.stride(-1) == 1 else q.contiguous(), k_cache, v_cache, ctx.block_table,
                                   ctx.context_lens, scaling, out=o[:, 0])
        return o, None
    if ctx.backend == "flash_attn":
        from flash_attn import flash_attn_with_kvcache
        o = flash_attn_with_kvcache(query.transpose(1, 2), k_cache, v_cache, cache_seqlens=ctx.context_lens,
                                    block_table=ctx.block_table, softmax_scale=scaling, causal=True)
        return o, None
    return decode_torch(query, k_cache, v_cache, ctx.block_table, ctx.context_lens, scaling), None


def register() -> str:
    from transformers import AttentionInterface
    AttentionInterface.register(ATTN_NAME, native_attention)
    return ATTN_NAME
