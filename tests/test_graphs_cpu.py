"""CUDA-graph decode (``engines/native/graphs.py``) on CPU: everything but the capture itself.

``EagerGraphs`` replaces ``_capture`` by a stand-in "graph" whose replay runs the captured
forward on the *same static buffer views* the real capture would have recorded (so a step that
did not update the buffers in place would replay stale inputs). Checked: bucket and width
choice, host-side padding of the extra rows to the KV scratch page, in-place uploads, one
capture per (bucket, width), cloned outputs, and a whole engine run through the graph path
(torch backend: page-width buckets; triton backend under the interpreter: full width, only the
used columns uploaded) giving exactly the tokens, per-step log and KV pages of the eager run.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pdlib.engines.native import NativeEngine
from pdlib.engines.native.graphs import DecodeGraphs, default_buckets
from pdlib.policy import FixedK
from pdlib.workload import Request, Workload


class _Replay:
    def __init__(self, fn):
        self.fn, self.replays = fn, 0

    def replay(self):
        self.replays += 1
        self.fn()


class EagerGraphs(DecodeGraphs):
    """``_capture`` without CUDA: the forward is bound to the static buffer views, as in a graph."""

    def _capture(self, bs, width):
        args = self._args(bs, width)
        self.captured = [*getattr(self, "captured", []), (bs, width, [a.data_ptr() for a in args])]
        out = self.forward(*args).clone()
        self.graphs[(bs, width)] = (_Replay(lambda: out.copy_(self.forward(*args))), out)


def _graphs(page_buckets=True, **kw):
    kw = {"max_batch": 20, "max_pages": 40, "scratch_page": 99, "page_size": 16, "device": "cpu",
          "page_buckets": page_buckets, **kw}
    return EagerGraphs(kw.pop("forward", None), **kw)


@pytest.mark.parametrize("max_batch", [1, 5, 16, 20, 64, 256, 300])
def test_buckets_cover_every_batch_minimally(max_batch):
    b = default_buckets(max_batch)
    assert b == sorted(set(b)) and b[0] == 1 and b[-1] == max_batch
    g = _graphs(max_batch=max_batch)
    for B in range(1, max_batch + 1):
        bs = g.bucket(B)
        assert bs >= B and not any(B <= x < bs for x in b)
    assert g.bucket(max_batch + 1) is None
    # padding waste: at most 15 rows (16-wide buckets) or under 2x (the small ones)
    assert all(g.bucket(B) - B < max(16, B) for B in range(1, max_batch + 1))


def test_widths():
    g, full = _graphs(), _graphs(page_buckets=False)
    assert [g.width(p) for p in (0, 1, 2, 3, 5, 17, 33, 40)] == [1, 1, 2, 4, 8, 32, 40, 40]
    assert {full.width(p) for p in (1, 3, 40)} == {40}


def test_static_buffers_start_padded():
    g = _graphs()
    assert g.block_table.shape == (20, 40) and g.block_table.eq(99).all()
    assert g.slot_mapping.eq(99 * 16).all() and g.context_lens.eq(1).all()


@pytest.mark.parametrize("page_buckets", [True, False])
def test_stage_pads_rows_to_the_scratch_page(page_buckets):
    g = _graphs(page_buckets=page_buckets)
    bt = np.array([[3, 4, 5], [7, 99, 99], [8, 9, 99]], dtype=np.int32)
    bs, width, meta, hbt = g.stage(3, np.array([40, 5, 20]), np.array([5 * 16 + 8, 7 * 16 + 5, 9 * 16 + 4]), bt,
                                   np.array([41, 6, 21]))
    assert bs == 4 and width == (4 if page_buckets else 40)
    assert meta.tolist() == [[40, 88, 41], [5, 117, 6], [20, 148, 21], [0, 99 * 16, 1]]
    assert hbt.shape == (4, 4 if page_buckets else 3)          # full width: only the columns in use
    assert (hbt[:3, :3] == bt).all() and (hbt[3] == 99).all() and (hbt[:, 3:] == 99).all()


def test_stage_refuses_what_no_graph_holds():
    g = _graphs()
    with pytest.raises(ValueError, match="exceeds the largest CUDA-graph bucket 20"):
        g.stage(21, *[np.zeros(21)] * 2, np.zeros((21, 1), np.int32), np.ones(21))
    with pytest.raises(ValueError, match="41 pages exceeds the graphs' width 40"):
        g.stage(2, *[np.zeros(2)] * 2, np.zeros((2, 41), np.int32), np.ones(2))


def test_upload_is_in_place_and_leaves_unused_columns():
    g = _graphs(page_buckets=False)
    ptrs = [t.data_ptr() for t in (g.input_ids, g.positions, g.slot_mapping, g.block_table, g.context_lens)]
    g.block_table[:, 10:] = 12345                                     # stale columns from an earlier step
    _, _, meta, hbt = g.stage(2, np.array([3, 17]), np.array([3, 16 + 1]), np.array([[0, 99], [1, 2]], np.int32),
                               np.array([4, 18]))
    g.upload(2, torch.tensor([11, 12]), meta, hbt)
    assert ptrs == [t.data_ptr() for t in (g.input_ids, g.positions, g.slot_mapping, g.block_table, g.context_lens)]
    assert g.input_ids[:2].tolist() == [11, 12] and g.positions[:2].tolist() == [3, 17]
    assert g.slot_mapping[:2].tolist() == [3, 17] and g.context_lens[:2].tolist() == [4, 18]
    assert g.block_table[:2, :2].tolist() == [[0, 99], [1, 2]]
    assert g.block_table[:, 10:].eq(12345).all()                      # never uploaded, never read (context_lens)


def test_run_captures_once_per_key_and_replays_static_buffers():
    calls = []

    def forward(ids, pos, slots, bt, lens):
        calls.append(bt.shape)
        return ids * 1000 + pos * 10 + lens + bt[:, 0].long() * 0

    g = _graphs(forward=forward)
    static = [g.input_ids.data_ptr(), g.positions.data_ptr(), g.slot_mapping.data_ptr()]
    for step in range(3):                                               # same bucket (4) and width (2)
        pos = np.array([17 + step, 3 + step, 30 + step])
        out = g.run(3, torch.tensor([1, 2, 3]), pos, pos, np.array([[5, 6], [7, 99], [8, 9]], np.int32), pos + 1)
        assert out.tolist() == (np.array([1, 2, 3]) * 1000 + pos * 10 + pos + 1).tolist()
    assert list(g.graphs) == [(4, 2)] and g.graphs[(4, 2)][0].replays == 3
    assert [c[2][:3] for c in g.captured] == [static]                   # the graph holds the static buffers
    out2 = g.run(9, torch.arange(9), np.arange(9), np.arange(9), np.zeros((9, 5), np.int32), np.arange(9) + 1)
    assert sorted(g.graphs) == [(4, 2), (16, 8)] and out2.shape == (9,)
    before = out2.clone()
    g.run(9, torch.arange(9) + 5, np.arange(9), np.arange(9), np.zeros((9, 5), np.int32), np.arange(9) + 1)
    assert torch.equal(out2, before)                                   # a returned output is a clone


# ----------------------------------------------------------------------------- the engine through the graph path
SMALL = {"model_type": "qwen3", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
         "max_position_embeddings": 512, "initializer_range": 0.2}


def _workload():
    rng = np.random.default_rng(0)
    ins, outs = [5, 40, 17, 3, 60, 12], [9, 4, 12, 6, 3, 10]
    return Workload("g", [Request(f"r{i}", a, b, rng.integers(1, 255, a).tolist())
                          for i, (a, b) in enumerate(zip(ins, outs))])


def _engine(backend, graphs: bool):
    eng = NativeEngine(SMALL, weights="random", dtype="fp32", device="cpu", kv_capacity_tokens=2048, seed=1,
                       max_batch=8, attn_backend=backend, page_size=16)
    if graphs:
        r = eng.runner
        r.graphs = EagerGraphs(r._forward_decode, max_batch=8, max_pages=r.max_pages,
                               scratch_page=r.cache.scratch_page, page_size=r.cache.page_size, device="cpu",
                               page_buckets=backend == "torch", buckets=[1, 2, 4, 8])
    return eng


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_engine_graph_path_matches_eager(backend):
    if backend == "triton":
        ta = pytest.importorskip("pdlib.engines.native.triton_attention")
        if not ta.INTERPRET:
            pytest.skip("needs the Triton interpreter (no CUDA device visible)")
    wl = _workload()
    eager, graphed = _engine(backend, False), _engine(backend, True)
    a, b = eager.run(wl, FixedK(5, 2)), graphed.run(wl, FixedK(5, 2))
    assert [r["output_ids"] for r in a.requests] == [r["output_ids"] for r in b.requests]
    for col in ("phase", "batch_size", "tokens", "kv_tokens"):
        assert list(a.log[col]) == list(b.log[col])
    g = graphed.runner.graphs
    assert sum(r.replays for r, _ in g.graphs.values()) == int((b.log["phase"] == "decode").sum())
    assert any(bs > B for (bs, _w) in g.graphs for B in b.log["batch_size"][b.log["phase"] == "decode"])   # padded
    if backend == "triton":
        assert {w for _, w in g.graphs} == {graphed.runner.max_pages}
    # padded rows wrote only the scratch page: the same slots of the real pages hold K/V (equal up
    # to the rounding of a different batch shape), and the scratch page was written only here
    s = graphed.cache.scratch_page
    for name in ("k", "v"):
        e, g_ = getattr(eager.cache, name)[:, :s], getattr(graphed.cache, name)[:, :s]
        assert torch.equal(e.abs().sum(-1) > 0, g_.abs().sum(-1) > 0)
        torch.testing.assert_close(e, g_, atol=1e-5, rtol=1e-5)
    assert graphed.cache.k[:, s].abs().sum() > 0 and eager.cache.k[:, s].abs().sum() == 0
