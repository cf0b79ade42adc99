"""Triton kernels over pdlib's paged KV cache: write new K/V into pages, and decode attention.

Cache layout (``kv_cache.KVCache.layer_views``): ``[num_pages + 1, page_size, kv_heads, head_dim]``
per layer, K and V apart; the last page is the scratch page of padded CUDA-graph rows.

* ``store_kv(k_cache, v_cache, k, v, slot_mapping)``: grid ``(tokens,)``; program t copies
  token t's ``[kv_heads, head_dim]`` K and V to flat slot ``slot_mapping[t]`` (one launch for
  both; ``slot < 0`` skips the token). Reads ``k``/``v`` through their strides (no copy).
* ``decode_attention(q, k_cache, v_cache, block_table, context_lens, scale)``: one query token
  per row. Stage 1, grid ``(B, kv_heads * cdiv(G, BLOCK_H), S)`` with G = q_heads / kv_heads:
  a program holds the G query heads sharing one KV head (padded to BLOCK_H = 16 rows so
  ``tl.dot`` can use tensor cores; each K/V token is read once per KV head, not once per query
  head) and walks split s of its row's ``context_lens[b]`` tokens in blocks of BLOCK_N tokens,
  looking each token's page up in ``block_table`` (any page size), with an online softmax in
  fp32. Split-K: each row's context is cut into S equal chunks (a multiple of BLOCK_N, computed
  in the kernel from the row's own length, so short rows leave trailing splits empty); S depends
  on shapes only (batch, KV heads, block-table width, SM count), never on the lengths, so a
  CUDA graph can capture it. S = 1 writes the output directly; S > 1 writes per-split partial
  outputs and log-sum-exps and stage 2, grid ``(B, q_heads)``, merges them.

Without a CUDA device (or with ``TRITON_INTERPRET=1``) the kernels run in Triton's interpreter
on CPU tensors (``INTERPRET``; the tests). The interpreter (triton 3.9) gets bf16 arithmetic and
``tl.dot`` wrong (numpy has no bf16), so there every load is cast to fp32 first (``UPCAST``);
on a GPU the dots take the cache dtype (fp32: IEEE, not TF32) with fp32 accumulation.
Block sizes are fixed defaults (BLOCK_N 64 for head_dim <= 128, 4 warps, 2 stages), untuned.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

BLOCK_H = 16            # query heads per program (tl.dot needs M >= 16)
MAX_SPLITS = 16
MIN_SPLIT_TOKENS = 256  # never split a context into chunks shorter than this
_SM_COUNT: dict = {}


def _env_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() not in ("", "0", "false", "off")


#: The kernels run in Triton's interpreter (numpy, on CPU tensors) when TRITON_INTERPRET is set
#: or no CUDA device is visible when this module is imported; else they are compiled for the GPU.
INTERPRET = _env_interpret() or not torch.cuda.is_available()


def _jit(fn):
    """``triton.jit``, in interpreter mode when ``INTERPRET`` (decided here, not process-wide:
    TRITON_INTERPRET is set only while decorating)."""
    if not INTERPRET or _env_interpret():
        return triton.jit(fn)
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return triton.jit(fn)
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


def available(device) -> bool:
    """Whether these kernels can run on ``device``: a CUDA device (compiled), or the CPU when
    ``INTERPRET``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and INTERPRET


# Reductions: tl.sum / tl.max compiled; in the interpreter, tl.reduce with triton.language's own
# combine functions (its numpy fast path). tl.sum, tl.max, tl.cdiv and tl.zeros are themselves
# jit functions that triton.language decorates at import, so an interpreted kernel cannot call
# them unless TRITON_INTERPRET was set before triton was imported; the kernels avoid them there.
@_jit
def _rsum(x, axis: tl.constexpr, INTERP: tl.constexpr):
    if INTERP:
        return tl.reduce(x, axis, tl.standard._sum_combine)
    else:
        return tl.sum(x, axis)


@_jit
def _rmax(x, axis: tl.constexpr, INTERP: tl.constexpr):
    if INTERP:
        return tl.reduce(x, axis, tl.standard._elementwise_max)
    else:
        return tl.max(x, axis)


# ----------------------------------------------------------------------------- KV write
@_jit
def _store_kv_kernel(k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr,
                     s_kt, s_kh, s_kd, s_vt, s_vh, s_vd, s_cs, s_ch,
                     H: tl.constexpr, D: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot >= 0:
        h = tl.arange(0, BLOCK_HK)[:, None]
        d = tl.arange(0, BLOCK_D)[None, :]
        m = (h < H) & (d < D)
        dst = slot * s_cs + h * s_ch + d
        k = tl.load(k_ptr + t * s_kt + h * s_kh + d * s_kd, mask=m)
        tl.store(kc_ptr + dst, k, mask=m)
        v = tl.load(v_ptr + t * s_vt + h * s_vh + d * s_vd, mask=m)
        tl.store(vc_ptr + dst, v, mask=m)


def store_kv(k_cache, v_cache, k, v, slot_mapping) -> None:
    """Write ``k``/``v`` [tokens, kv_heads, head_dim] into a layer's pages at the flat slots
    (same result as ``attention.store_kv``)."""
    T, H, D = k.shape
    if T == 0:
        return
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and k_cache.shape[-2:] == (H, D)
    kc, vc = k_cache.view(-1, H, D), v_cache.view(-1, H, D)
    _store_kv_kernel[(T,)](k, v, kc, vc, slot_mapping, *k.stride(), *v.stride(), kc.stride(0), kc.stride(1),
                           H=H, D=D, BLOCK_HK=triton.next_power_of_2(H), BLOCK_D=triton.next_power_of_2(D))


# ----------------------------------------------------------------------------- decode
@_jit
def _decode_kernel(q_ptr, kc_ptr, vc_ptr, bt_ptr, lens_ptr, out_ptr, mid_o_ptr, mid_lse_ptr, scale,
                   s_qb, s_qh, s_cp, s_ct, s_ch, s_bt, s_ob, s_oh,
                   HQ: tl.constexpr, G: tl.constexpr, PAGE: tl.constexpr, D: tl.constexpr, HEAD_BLOCKS: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, SPLITS: tl.constexpr,
                   UPCAST: tl.constexpr, IEEE: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1) // HEAD_BLOCKS
    hb = tl.program_id(1) % HEAD_BLOCKS
    s = tl.program_id(2)
    L = tl.load(lens_ptr + b)
    per = ((L + SPLITS - 1) // SPLITS + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    start = s * per
    end = tl.minimum(start + per, L)

    offs_g = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    g_mask = offs_g < G
    d_mask = offs_d < D
    heads = kvh * G + offs_g
    q = tl.load(q_ptr + b * s_qb + heads[:, None] * s_qh + offs_d[None, :],
                mask=g_mask[:, None] & d_mask[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.full([BLOCK_H], 0.0, dtype=tl.float32)
    acc = tl.full([BLOCK_H, BLOCK_D], 0.0, dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + offs_n
        n_mask = pos < end
        page = tl.load(bt_ptr + b * s_bt + pos // PAGE, mask=n_mask, other=0).to(tl.int64)
        off = page * s_cp + (pos % PAGE) * s_ct + kvh * s_ch
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(kc_ptr + off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
        if IEEE:
            qk = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            qk = tl.dot(q, tl.trans(k))
        qk = tl.where(n_mask[None, :], qk * scale, float("-inf"))
        m_new = tl.maximum(m_i, _rmax(qk, 1, UPCAST))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(qk - m_new[:, None])
        l_i = l_i * alpha + _rsum(p, 1, UPCAST)
        v = tl.load(vc_ptr + off[:, None] + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            v = v.to(tl.float32)
        if IEEE:
            pv = tl.dot(p, v, input_precision="ieee")
        else:
            pv = tl.dot(p.to(v.dtype), v)
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    nonempty = l_i > 0
    o = acc / tl.where(nonempty, l_i, 1.0)[:, None]
    om = g_mask[:, None] & d_mask[None, :]
    if SPLITS == 1:
        tl.store(out_ptr + b * s_ob + heads[:, None] * s_oh + offs_d[None, :], o.to(out_ptr.dtype.element_ty),
                 mask=om)
    else:
        # mid_o [B, Hq, SPLITS, D] fp32, mid_lse [B, Hq, SPLITS] fp32, contiguous
        row = (b * HQ + heads) * SPLITS + s
        tl.store(mid_o_ptr + row[:, None] * D + offs_d[None, :], o, mask=om)
        lse = tl.where(nonempty, m_i + tl.log(tl.where(nonempty, l_i, 1.0)), float("-inf"))
        tl.store(mid_lse_ptr + row, lse, mask=g_mask)


@_jit
def _merge_kernel(mid_o_ptr, mid_lse_ptr, out_ptr, s_ob, s_oh, HQ: tl.constexpr, D: tl.constexpr,
                  SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, INTERP: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < SPLITS
    d_mask = offs_d < D
    row = (b * HQ + h) * SPLITS + offs_s
    lse = tl.load(mid_lse_ptr + row, mask=s_mask, other=float("-inf"))
    m = _rmax(lse, 0, INTERP)
    w = tl.where(lse > float("-inf"), tl.exp(lse - m), 0.0)
    o = tl.load(mid_o_ptr + row[:, None] * D + offs_d[None, :], mask=s_mask[:, None] & d_mask[None, :], other=0.0)
    res = _rsum(w[:, None] * o, 0, INTERP) / _rsum(w, 0, INTERP)
    tl.store(out_ptr + b * s_ob + h * s_oh + offs_d, res.to(out_ptr.dtype.element_ty), mask=d_mask)


def sm_count(device) -> int:
    device = torch.device(device)
    if device.type != "cuda":
        return 8                            # the interpreter: a pretend GPU, so that splits get exercised
    i = device.index if device.index is not None else torch.cuda.current_device()
    if i not in _SM_COUNT:
        _SM_COUNT[i] = torch.cuda.get_device_properties(i).multi_processor_count
    return _SM_COUNT[i]


def num_splits(batch: int, kv_programs: int, max_tokens: int, sms: int) -> int:
    """Split-K factor from shapes only (a power of two, so few kernel variants get compiled):
    about enough programs for 2 waves of the SMs, at most MAX_SPLITS, and chunks of at least
    MIN_SPLIT_TOKENS of the longest context the block table can address."""
    want = min(-(-2 * sms // max(batch * kv_programs, 1)), MAX_SPLITS, -(-max_tokens // MIN_SPLIT_TOKENS))
    return 1 << (max(want, 1).bit_length() - 1)


def decode_attention(q, k_cache, v_cache, block_table, context_lens, scale, *, out=None, splits=None,
                     block_n=None):
    """Paged decode attention. ``q`` [B, Hq, D] (any strides, last dim contiguous), caches
    [pages, page_size, Hkv, D] (contiguous), ``block_table`` [B, P] int32, ``context_lens`` [B]
    int32 (>= 1, the tokens each row attends to). Returns ``out`` [B, Hq, D] (q's dtype).
    ``splits``: split-K factor (None: ``num_splits`` of the shapes)."""
    B, Hq, D = q.shape
    _, page, Hkv, Dk = k_cache.shape
    if Dk != D or Hq % Hkv:
        raise ValueError(f"query heads {Hq} x {D} do not fit KV heads {Hkv} x {Dk}")
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and q.stride(-1) == 1
    G = Hq // Hkv
    head_blocks = -(-G // BLOCK_H)
    if out is None:
        out = torch.empty((B, Hq, D), dtype=q.dtype, device=q.device)
    if B == 0:
        return out
    S = splits or num_splits(B, Hkv * head_blocks, block_table.shape[1] * page, sm_count(q.device))
    BLOCK_D = max(16, triton.next_power_of_2(D))
    BLOCK_N = block_n or (64 if BLOCK_D <= 128 else 32)
    upcast = INTERPRET
    ieee = q.dtype == torch.float32 and not upcast
    if S > 1:
        mid_o = torch.empty((B, Hq, S, D), dtype=torch.float32, device=q.device)
        mid_lse = torch.empty((B, Hq, S), dtype=torch.float32, device=q.device)
    else:
        mid_o = mid_lse = out                                   # unused
    kw = {} if upcast else {"num_warps": 4, "num_stages": 2}
    _decode_kernel[(B, Hkv * head_blocks, S)](
        q, k_cache, v_cache, block_table, context_lens, out, mid_o, mid_lse, float(scale),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_table.stride(0),
        out.stride(0), out.stride(1),
        HQ=Hq, G=G, PAGE=page, D=D, HEAD_BLOCKS=head_blocks, BLOCK_H=BLOCK_H, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
        SPLITS=S, UPCAST=upcast, IEEE=ieee, **kw)
    if S > 1:
        _merge_kernel[(B, Hq)](mid_o, mid_lse, out, out.stride(0), out.stride(1), HQ=Hq, D=D, SPLITS=S,
                               BLOCK_S=max(2, triton.next_power_of_2(S)), BLOCK_D=BLOCK_D, INTERP=INTERPRET)
    return out
