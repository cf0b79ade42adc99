"""pdlib's Triton kernels (``engines/native/triton_attention.py``) against the torch reference
(``attention.decode_torch`` / ``attention.store_kv``).

Without a GPU the kernels run in Triton's interpreter on CPU tensors (``INTERPRET``: set by the
module itself when no CUDA device is visible, or by TRITON_INTERPRET=1). The interpreter is
slow, so the decode cases are a sample that covers each axis rather than the product: dtype
(fp32, bf16, one fp16), batch 1..64, contexts 1..2048 (page multiples, +-1 around them, rows of
very different lengths in one batch), GQA ratios 1, 2, 4, 8 (and 20 > BLOCK_H), page sizes
16..256, head dims 48/64/128, split-K off, automatic and forced (empty splits included).
The ``gpu`` tests repeat the comparison compiled on CUDA and run the engine with CUDA graphs.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from pdlib.engines.native import attention as A
from pdlib.engines.native import triton_attention as T
from pdlib.engines.native.config import ATTN_BACKENDS, DEFAULT_PAGE_SIZE, NativeConfig
from pdlib.engines.native.model_runner import resolve_backend, triton_unavailable

DEV = "cpu"
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}


def paged(lens, page, kv_heads, head_dim, dtype, device=DEV, seed=0, spare=3):
    """A cache holding rows of ``lens`` tokens in shuffled pages, its block table (padded with the
    scratch page) and context lengths."""
    g = torch.Generator().manual_seed(seed)
    need = [-(-n // page) for n in lens]
    num_pages = sum(need) + spare
    k = torch.randn(num_pages + 1, page, kv_heads, head_dim, generator=g).to(dtype)
    v = torch.randn(num_pages + 1, page, kv_heads, head_dim, generator=g).to(dtype)
    order = torch.randperm(num_pages, generator=g).tolist()
    bt = torch.full((len(lens), max(need)), num_pages, dtype=torch.int32)
    for i, n in enumerate(need):
        bt[i, :n] = torch.tensor([order.pop() for _ in range(n)], dtype=torch.int32)
    cl = torch.tensor(lens, dtype=torch.int32)
    return k.to(device), v.to(device), bt.to(device), cl.to(device)


def reference(q, k, v, bt, cl, scale):
    """The torch path in fp32 on the same (rounded) inputs: [B, Hq, D]."""
    f = torch.float32
    return A.decode_torch(q.to(f)[:, :, None], k.to(f), v.to(f), bt, cl, scale)[:, 0]


def check_decode(lens, G, kv_heads, head_dim, page, dtype, device=DEV, splits=None, block_n=None, seed=0):
    k, v, bt, cl = paged(lens, page, kv_heads, head_dim, dtype, device, seed)
    gq = torch.Generator().manual_seed(seed + 1)
    q = torch.randn(len(lens), kv_heads * G, head_dim, generator=gq).to(dtype).to(device)
    scale = head_dim ** -0.5
    out = T.decode_attention(q, k, v, bt, cl, scale, splits=splits, block_n=block_n)
    assert out.shape == q.shape and out.dtype == dtype
    ref = reference(q, k, v, bt, cl, scale)
    err = (out.float() - ref).abs().max().item()
    assert err <= TOL[dtype], f"max abs error {err:.3g} > {TOL[dtype]}"
    return out


LONG_SHORT = [2048, 1, 700, 16, 17, 255]
CASES = {
    # id: (lens, G, kv_heads, head_dim, page, dtype, splits, block_n)
    "b1-ctx1-mha-fp32": ([1], 1, 2, 64, 16, torch.float32, None, None),
    "b1-ctx2048-g2-bf16-autosplit": ([2048], 2, 2, 128, 16, torch.bfloat16, None, None),
    "b2-g2-p256-fp32": ([300, 2048], 2, 2, 128, 256, torch.float32, None, None),
    "b6-mixed-g4-p32-bf16": (LONG_SHORT, 4, 2, 64, 32, torch.bfloat16, None, None),
    "b6-mixed-g8-p128-fp32-split4-bn16": (LONG_SHORT, 8, 1, 64, 128, torch.float32, 4, 16),
    "b3-g1-p64-bf16-split8-empty": ([1, 64, 1999], 1, 4, 128, 64, torch.bfloat16, 8, 32),
    "b17-pagepm1-g2-p16-fp32": ([15, 16, 17, 31, 32, 33, 1, 2, 47, 48, 49, 63, 64, 65, 100, 128, 129],
                                2, 2, 64, 16, torch.float32, 1, None),
    "b64-g8-p16-bf16": ([1 + (37 * i) % 600 for i in range(64)], 8, 1, 64, 16, torch.bfloat16, None, None),
    "b5-g20-d48-p32-fp32": ([5, 90, 33, 1, 64], 20, 1, 48, 32, torch.float32, 2, None),
    "b4-g4-p16-fp16": ([3, 250, 1025, 64], 4, 2, 128, 16, torch.float16, None, None),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_decode_matches_torch_reference(case):
    lens, G, kvh, d, page, dtype, splits, block_n = CASES[case]
    check_decode(lens, G, kvh, d, page, dtype, splits=splits, block_n=block_n)


def test_splits_do_not_change_the_result():
    """The same rows with 1, 2, 4 and 16 splits (most of them empty for the short rows)."""
    outs = [check_decode([1, 129, 700], 2, 1, 64, 16, torch.float32, splits=s, block_n=32) for s in (1, 2, 4, 16)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=2e-6, rtol=0)


def test_padded_rows_read_only_the_scratch_page():
    """CUDA-graph padding: rows of context 1 whose table is all scratch page attend to its slot 0
    (= v[scratch, 0]); NaN garbage beyond ``context_lens`` and stale out-of-range block-table
    columns beyond a row's pages (full-width graphs upload only the columns in use) are never read."""
    k, v, bt, cl = paged([40, 1, 1], 16, 2, 64, torch.float32)
    scratch = k.shape[0] - 1
    bt[1:] = scratch
    k[scratch, 1:] = float("nan")
    v[scratch, 1:] = float("nan")
    wide = torch.cat([bt, torch.full((3, 5), 10 ** 6, dtype=torch.int32)], 1)
    q = torch.randn(3, 4, 64)
    out = T.decode_attention(q, k, v, wide, cl, 0.125)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], v[scratch, 0].repeat_interleave(2, 0).expand(2, 4, 64))
    torch.testing.assert_close(out[:1], reference(q[:1], k, v, bt[:1], cl[:1], 0.125), atol=2e-5, rtol=0)


def test_num_splits_from_shapes_only():
    for B in (1, 2, 3, 8, 64, 256):
        for width in (16, 512, 40960):
            s = T.num_splits(B, 8, width, 132)
            assert 1 <= s <= T.MAX_SPLITS and s & (s - 1) == 0
            assert s == 1 or width // s >= T.MIN_SPLIT_TOKENS // 2
    assert T.num_splits(1, 8, 40960, 132) == T.MAX_SPLITS
    assert T.num_splits(64, 8, 40960, 132) == 1            # 512 programs fill 132 SMs: no split
    assert T.num_splits(1, 8, 200, 132) == 1               # a short table is never split


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_kv_matches_index_copy(dtype):
    g = torch.Generator().manual_seed(3)
    shape = (6, 16, 2, 64)
    kc, vc = torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)
    kc2, vc2 = kc.clone(), vc.clone()
    key = torch.randn(1, 2, 37, 64, generator=g).to(dtype)            # [B, Hkv, T, D] as transformers gives it
    val = torch.randn(1, 2, 37, 64, generator=g).to(dtype)
    k_new = key.transpose(1, 2).reshape(37, 2, 64)                     # strided view, no copy
    v_new = val.transpose(1, 2).reshape(37, 2, 64)
    assert not k_new.is_contiguous()
    slots = torch.randperm(6 * 16, generator=g)[:37]
    A.store_kv(kc, vc, k_new, v_new, slots)
    T.store_kv(kc2, vc2, k_new, v_new, slots)
    assert torch.equal(kc, kc2) and torch.equal(vc, vc2)


def test_store_kv_skips_negative_slots():
    kc, vc = torch.zeros(2, 16, 1, 32), torch.zeros(2, 16, 1, 32)
    k = torch.ones(3, 1, 32)
    T.store_kv(kc, vc, k, 2 * k, torch.tensor([5, -1, 20]))
    flat = kc.view(-1, 32)
    assert flat[5].eq(1).all() and flat[20].eq(1).all() and flat.sum() == 2 * 32
    assert vc.view(-1, 32)[20].eq(2).all()


# ----------------------------------------------------------------------------- backend choice
def test_backend_choices_and_page_sizes():
    assert ATTN_BACKENDS == ("auto", "triton", "flash_attn", "torch")
    assert set(DEFAULT_PAGE_SIZE) == set(ATTN_BACKENDS) - {"auto"}
    assert NativeConfig(model={}, attn_backend="triton").page_size_for("triton") == 16
    with pytest.raises(ValueError, match="attn_backend must be one of"):
        NativeConfig(model={}, attn_backend="flash")


def test_resolve_backend_on_cpu(monkeypatch):
    assert resolve_backend("auto", "cpu") == "torch"                 # CPU: auto is always the reference
    assert resolve_backend("torch", "cpu") == "torch"
    if T.INTERPRET:
        assert triton_unavailable("cpu") is None and resolve_backend("triton", "cpu") == "triton"
    import sys

    monkeypatch.setenv("PDLIB_ATTN_BACKEND", "torch")                 # a machine-wide pin replaces auto
    assert resolve_backend("auto", "cuda") == "torch" and resolve_backend("triton", "cpu" if T.INTERPRET else "cuda")
    monkeypatch.setenv("PDLIB_ATTN_BACKEND", "tritonx")
    with pytest.raises(ValueError, match="PDLIB_ATTN_BACKEND must be one of"):
        resolve_backend("auto", "cpu")
    monkeypatch.delenv("PDLIB_ATTN_BACKEND")
    from pdlib.engines import native
    monkeypatch.delattr(native, "triton_attention", raising=False)      # as if triton were not installed
    monkeypatch.setitem(sys.modules, "pdlib.engines.native.triton_attention", None)
    assert "not importable" in triton_unavailable("cpu")
    with pytest.raises(ImportError, match="attn_backend='triton': triton is not importable"):
        resolve_backend("triton", "cpu")
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="flash-attn package"):
            resolve_backend("flash_attn", "cpu")


def test_engine_with_triton_matches_torch_on_cpu():
    """The whole engine (prefill KV writes + decode through the interpreted kernels) gives the
    same tokens and the same per-step log as the torch backend."""
    if not T.INTERPRET:
        pytest.skip("needs the Triton interpreter (no CUDA device visible)")
    from pdlib.engines.native import NativeEngine
    from pdlib.policy import FixedK
    from pdlib.workload import Request, Workload
    small = {"model_type": "qwen3", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "max_position_embeddings": 512, "initializer_range": 0.2}
    rng = np.random.default_rng(0)
    wl = Workload("t", [Request(f"r{i}", a, b, rng.integers(1, 255, a).tolist())
                        for i, (a, b) in enumerate(zip([5, 40, 17, 3], [4, 3, 5, 2]))])
    runs = {}
    for backend in ("torch", "triton"):
        eng = NativeEngine(small, weights="random", dtype="fp32", device="cpu", kv_capacity_tokens=1024, seed=1,
                           attn_backend=backend, page_size=16)
        assert eng.describe()["attn_backend"] == backend
        runs[backend] = eng.run(wl, FixedK(3, 2))
    a, b = runs["torch"], runs["triton"]
    assert [r["output_ids"] for r in a.requests] == [r["output_ids"] for r in b.requests]
    for col in ("phase", "batch_size", "tokens", "kv_tokens"):
        assert list(a.log[col]) == list(b.log[col])


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("page", [16, 256])
def test_decode_on_cuda(dtype, page):
    lens = [1 + (97 * i) % 2048 for i in range(48)] + [2048, 1, 4000, 16]
    for G, kvh in ((1, 8), (2, 8), (4, 4), (8, 1)):
        check_decode(lens, G, kvh, 128, page, dtype, device="cuda")
        check_decode(lens[:3], G, kvh, 128, page, dtype, device="cuda", splits=8)


@pytest.mark.gpu
def test_store_kv_on_cuda():
    kc, vc = torch.zeros(9, 16, 8, 128, device="cuda", dtype=torch.bfloat16), None
    vc = torch.zeros_like(kc)
    kc2, vc2 = kc.clone(), vc.clone()
    k = torch.randn(1, 8, 100, 128, device="cuda").bfloat16().transpose(1, 2).reshape(100, 8, 128)
    slots = torch.randperm(9 * 16, device="cuda")[:100]
    A.store_kv(kc, vc, k, k * 2, slots)
    T.store_kv(kc2, vc2, k, k * 2, slots)
    assert torch.equal(kc, kc2) and torch.equal(vc, vc2)


@pytest.mark.gpu
def test_engine_triton_graphs_match_torch_eager_on_cuda():
    from pdlib.engines.native import NativeEngine
    from pdlib.policy import FixedK
    from pdlib.workload import Request, Workload
    small = {"model_type": "qwen3", "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256,
             "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
             "max_position_embeddings": 4096, "initializer_range": 0.2}
    rng = np.random.default_rng(0)
    ins = [5, 400, 17, 3, 1200, 12, 33, 8, 210, 2, 700, 64]
    wl = Workload("gpu", [Request(f"r{i}", a, 20, rng.integers(1, 511, a).tolist()) for i, a in enumerate(ins)])
    kw = {"weights": "random", "dtype": "fp32", "device": "cuda", "kv_capacity_tokens": 32768, "max_batch": 16,
          "seed": 2}
    g = NativeEngine(small, cuda_graphs=True, attn_backend="triton", **kw)
    e = NativeEngine(small, cuda_graphs=False, attn_backend="torch", **kw)
    assert g.describe()["attn_backend"] == "triton" and g.describe()["cuda_graphs"]
    rg, re_ = g.run(wl, FixedK(8, 3)), e.run(wl, FixedK(8, 3))
    assert [r["output_ids"] for r in rg.requests] == [r["output_ids"] for r in re_.requests]
    assert list(rg.log["kv_tokens"]) == list(re_.log["kv_tokens"])
