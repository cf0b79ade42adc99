"""The native runner's CPU linears through oneDNN over weights reordered once (``cpu_linear``):
same outputs as ``F.linear``, same greedy tokens as the plain runner, reported in describe/memory."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F

from pdlib.engines.native import NativeEngine
from pdlib.engines.native.cpu_linear import pack_linears, packed_forward
from pdlib.engines.native.profiling import time_decode

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_forward_matches_linear(dtype, bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 300, bias=bias).to(dtype)
    f = packed_forward(layer)
    if f is None:
        pytest.skip("oneDNN linear ops are not available in this torch build")
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for shape in ((1, 96), (7, 96), (33, 96), (2, 5, 96)):
        x = torch.randn(shape, dtype=dtype)
        with torch.inference_mode():
            got, want = f(x), F.linear(x, layer.weight, layer.bias)
        assert got.shape == want.shape
        torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)
    assert f.packed_bytes >= layer.weight.numel() * layer.weight.element_size()
    # not CPU-packable: left alone
    assert packed_forward(torch.nn.Linear(4, 4).to(torch.float64)) is None


def test_pack_linears_counts_once():
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    first = pack_linears(m)
    if first == 0:
        pytest.skip("oneDNN linear ops are not available in this torch build")
    assert first > 0 and pack_linears(m) == 0      # a packed layer is not packed again


def test_packed_runner_same_tokens_as_plain(tiny_qwen3_dir):
    kw = {"dtype": "fp32", "device": "cpu", "kv_capacity_tokens": 2048}
    packed = NativeEngine(str(tiny_qwen3_dir), **kw)
    plain = NativeEngine(str(tiny_qwen3_dir), cpu_packed_linear=False, **kw)
    assert plain.describe()["cpu_packed_linear"] is False and plain.memory()["packed_linear_bytes"] == 0
    if not packed.describe()["cpu_packed_linear"]:
        pytest.skip("oneDNN linear ops are not available in this torch build")
    assert packed.memory()["packed_linear_bytes"] > 0
    out = {}
    for name, eng in (("packed", packed), ("plain", plain)):
        r = eng.runner
        rids = [("t", i) for i in range(5)]
        prompts = [list(range(3 + i, 20 + 3 * i)) for i in range(5)]
        for rid, p in zip(rids, prompts):
            r.cache.allocate(rid, len(p) + 4)
        toks = [r.prefill(rids, prompts)]
        pos = np.array([len(p) for p in prompts], dtype=np.int64)
        for _ in range(3):
            toks.append(r.decode(rids, toks[-1], pos))
            pos = pos + 1
        r.cache.reset()
        out[name] = torch.stack(toks).tolist()
    assert out["packed"] == out["plain"]
    assert len(time_decode(packed.runner, 4, 16, 2)) == 2


def test_greedy_head_is_argmax_first_on_ties():
    from pdlib.engines.native.cpu_linear import GreedyHead
    torch.manual_seed(1)
    head = torch.nn.Linear(16, 1000, bias=False)
    with torch.no_grad():
        head.weight[700] = head.weight[3]          # rows 3 and 700 (another chunk) tie on every input
        head.weight[5] = head.weight[3]            # ... and rows 3 and 5 (same chunk)
    g = GreedyHead.build(head, chunk=256)
    if g is None:
        pytest.skip("oneDNN linear ops are not available in this torch build")
    assert len(g.chunks) == 4
    x = torch.randn(64, 16)
    x[0] = head.weight[3].detach() * 10                # row 0 picks the tied rows
    with torch.inference_mode():
        want = head(x).argmax(-1)
        got = g(x)
    assert torch.equal(got, want) and int(got[0]) == 3


def test_greedy_head_partial_updates_match_argmax():
    """Small chunks (28 of them) so that later chunks raise the maximum of some rows only: the
    index is then taken for those rows alone (``index_copy``), and must still be argmax's."""
    from pdlib.engines.native.cpu_linear import GreedyHead
    torch.manual_seed(2)
    head = torch.nn.Linear(24, 1000, bias=True)
    g = GreedyHead.build(head, chunk=37)
    if g is None:
        pytest.skip("oneDNN linear ops are not available in this torch build")
    assert len(g.chunks) == 28
    x = torch.randn(200, 24)
    with torch.inference_mode():
        want, got = head(x).argmax(-1), g(x)
    assert torch.equal(got, want)
    assert len({int(i) // 37 for i in got}) > 10         # the winners come from many chunks
