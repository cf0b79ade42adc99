"""CUDA-graph decode, nano-vllm style: one graph per batch-size bucket sharing one memory
pool; a step copies its metadata into static buffers, pads the bucket's extra rows (they write
to the KV scratch page and attend to one token) and replays. Only decode is graphed (prefill
shapes vary).

Block-table width: the triton and flash-attn kernels read only ``context_lens`` tokens of each
row, so every graph takes the full width (``max_pages``), all buckets are captured up front,
largest first, and a step uploads only the columns it uses (the rest are never read). The torch
backend gathers every page in the table, so its graphs are keyed by (batch bucket, power-of-two
page bucket), captured on first use (the warm-up run before capture performs the same step, and
KV writes are idempotent), and a step rewrites the bucket's whole width. Outputs are cloned after
each replay, so graphs may share the pool in any capture order.

Everything but ``_capture`` (host-side padding ``stage``, the in-place ``upload`` into the static
buffers, bucket and width choice) runs on CPU too, which is how it is tested
(tests/test_graphs_cpu.py).
"""
from __future__ import annotations

import numpy as np
import torch


def default_buckets(max_batch: int) -> list[int]:
    return sorted({b for b in (1, 2, 4, 8, *range(16, max_batch + 1, 16)) if b <= max_batch} | {max_batch})


class DecodeGraphs:
    def __init__(self, forward, *, max_batch: int, max_pages: int, scratch_page: int, page_size: int,
                 device, page_buckets: bool, buckets=None):
        """``forward(input_ids[B], positions[B], slot_mapping[B], block_table[B,P], context_lens[B])``
        runs one decode step and returns the greedy next tokens [B]. ``page_buckets``: key graphs
        by power-of-two block-table widths (torch backend) instead of one full width."""
        self.forward = forward
        self.buckets = sorted(set(buckets or default_buckets(max_batch)))
        self.max_pages, self.scratch_page, self.page_size = max_pages, scratch_page, page_size
        self.page_buckets = page_buckets
        self.device = torch.device(device)
        n = self.buckets[-1]
        self.input_ids = torch.zeros(n, dtype=torch.long, device=device)
        self.positions = torch.zeros(n, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((n,), scratch_page * page_size, dtype=torch.long, device=device)
        self.block_table = torch.full((n, max_pages), scratch_page, dtype=torch.int32, device=device)
        self.context_lens = torch.ones(n, dtype=torch.int32, device=device)
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None

    def width(self, pages: int) -> int:
        """Block-table width of the graph for a step whose rows hold at most ``pages`` pages."""
        if not self.page_buckets:
            return self.max_pages
        return min(self.max_pages, 1 << max(pages - 1, 0).bit_length())

    def bucket(self, B: int) -> int | None:
        """The smallest batch bucket holding ``B`` rows (None: larger than every bucket)."""
        for b in self.buckets:
            if b >= B:
                return b
        return None

    def _args(self, bs, width):
        return (self.input_ids[:bs], self.positions[:bs], self.slot_mapping[:bs], self.block_table[:bs, :width],
                self.context_lens[:bs])

    # ------------------------------------------------------------------ capture (CUDA only)
    @torch.inference_mode()
    def _capture(self, bs: int, width: int) -> None:
        self.forward(*self._args(bs, width))                # warm up (lazy inits, Triton compilation)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, self.pool):
            out = self.forward(*self._args(bs, width))
        if self.pool is None:
            self.pool = g.pool()
        self.graphs[(bs, width)] = (g, out)
        torch.cuda.synchronize()

    def capture_all(self) -> None:
        """Capture every batch bucket at full width, largest first (triton / flash-attn backends)."""
        for bs in reversed(self.buckets):
            self._capture(bs, self.max_pages)

    # ------------------------------------------------------------------ one step
    def stage(self, B: int, positions, slot_mapping, block_table: np.ndarray, context_lens):
        """Host side of a step: ``(bs, width, meta, bt)`` with ``meta`` [bs, 3] int64 (positions,
        slots, context lengths) and ``bt`` [bs, cols] int32, rows B..bs-1 padded (position 0, the
        scratch page's first slot, context length 1, scratch pages); ``cols`` is the graph width
        for the torch backend, else the step's own width."""
        bs = self.bucket(B)
        if bs is None:
            raise ValueError(f"decode batch {B} exceeds the largest CUDA-graph bucket {self.buckets[-1]}")
        pages = block_table.shape[1]
        if pages > self.max_pages:
            raise ValueError(f"block table of {pages} pages exceeds the graphs' width {self.max_pages}")
        width = self.width(pages)
        meta = np.zeros((bs, 3), dtype=np.int64)
        meta[:, 1] = self.scratch_page * self.page_size
        meta[:, 2] = 1
        meta[:B, 0], meta[:B, 1], meta[:B, 2] = positions, slot_mapping, context_lens
        bt = np.full((bs, width if self.page_buckets else max(pages, 1)), self.scratch_page, dtype=np.int32)
        bt[:B, :pages] = block_table
        return bs, width, meta, bt

    def _host(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory() if self.device.type == "cuda" else t

    def upload(self, B: int, input_ids, meta: np.ndarray, bt: np.ndarray) -> None:
        """Copy a staged step into the static buffers in place (the graphs hold their addresses)."""
        bs, cols = bt.shape
        meta_d = self._host(meta).to(self.device, non_blocking=True)
        self.block_table[:bs, :cols].copy_(self._host(bt), non_blocking=True)
        self.input_ids[:B].copy_(input_ids)
        self.positions[:bs].copy_(meta_d[:, 0])
        self.slot_mapping[:bs].copy_(meta_d[:, 1])
        self.context_lens[:bs].copy_(meta_d[:, 2])

    def run(self, B: int, input_ids, positions: np.ndarray, slot_mapping: np.ndarray, block_table: np.ndarray,
            context_lens: np.ndarray):
        bs, width, meta, bt = self.stage(B, positions, slot_mapping, block_table, context_lens)
        self.upload(B, input_ids, meta, bt)
        if (bs, width) not in self.graphs:
            self._capture(bs, width)
        g, out = self.graphs[(bs, width)]
        g.replay()
        return out[:B].clone()          # the static output is overwritten by the next replay
