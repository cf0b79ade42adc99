"""CUDA-graph decode, nano-vllm style: one graph per batch-size bucket sharing one memory
pool; a step copies its metadata into static buffers, pads the bucket's extra rows (they write
to the KV scratch page and attend to one token) and replays. Only decode is graphed (prefill
shapes vary).

Block-table width: with flash-attn the kernel reads only ``context_lens`` tokens, so every graph
takes the full width (``max_pages``) and all buckets are captured up front, largest first.
The torch backend gathers every page in the table, so its graphs are keyed by (batch bucket,
power-of-two page bucket) and captured on first use (the warm-up run before capture performs the
same step, and KV writes are idempotent). Outputs are cloned after each replay, so graphs may
share the pool in any capture order.
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
        runs one decode step and returns the greedy next tokens [B]."""
        self.forward = forward
        self.buckets = list(buckets or default_buckets(max_batch))
        self.max_pages, self.scratch_page, self.page_size = max_pages, scratch_page, page_size
        self.page_buckets = page_buckets
        n = self.buckets[-1]
        self.input_ids = torch.zeros(n, dtype=torch.long, device=device)
        self.positions = torch.zeros(n, dtype=torch.long, device=device)
        self.slot_mapping = torch.full((n,), scratch_page * page_size, dtype=torch.long, device=device)
        self.block_table = torch.full((n, max_pages), scratch_page, dtype=torch.int32, device=device)
        self.context_lens = torch.ones(n, dtype=torch.int32, device=device)
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None

    def width(self, pages: int) -> int:
        if not self.page_buckets:
            return self.max_pages
        return min(self.max_pages, 1 << max(pages - 1, 0).bit_length())

    def _args(self, bs, width):
        return (self.input_ids[:bs], self.positions[:bs], self.slot_mapping[:bs], self.block_table[:bs, :width],
                self.context_lens[:bs])

    @torch.inference_mode()
    def _capture(self, bs: int, width: int) -> None:
        self.forward(*self._args(bs, width))                # warm up (lazy inits, autotuning)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, self.pool):
            out = self.forward(*self._args(bs, width))
        if self.pool is None:
            self.pool = g.pool()
        self.graphs[(bs, width)] = (g, out)
        torch.cuda.synchronize()

    def capture_all(self) -> None:
        """Capture every batch bucket at full width, largest first (flash-attn backend)."""
        for bs in reversed(self.buckets):
            self._capture(bs, self.max_pages)

    def bucket(self, B: int) -> int | None:
        for b in self.buckets:
            if b >= B:
                return b
        return None

    def run(self, B: int, input_ids, positions: np.ndarray, slot_mapping: np.ndarray, block_table: np.ndarray,
            context_lens: np.ndarray):
        bs = self.bucket(B)
        width = self.width(block_table.shape[1])
        dev = self.input_ids.device
        meta = np.zeros((bs, 3), dtype=np.int64)
        meta[:, 1] = self.scratch_page * self.page_size
        meta[:, 2] = 1
        meta[:B, 0], meta[:B, 1], meta[:B, 2] = positions, slot_mapping, context_lens
        bt = np.full((bs, self.max_pages), self.scratch_page, dtype=np.int32)
        bt[:B, :block_table.shape[1]] = block_table
        meta_d = torch.from_numpy(meta).pin_memory().to(dev, non_blocking=True)
        self.block_table[:bs].copy_(torch.from_numpy(bt).pin_memory(), non_blocking=True)
        self.input_ids[:B].copy_(input_ids)
        self.positions[:bs].copy_(meta_d[:, 0])
        self.slot_mapping[:bs].copy_(meta_d[:, 1])
        self.context_lens[:bs].copy_(meta_d[:, 2])
        if (bs, width) not in self.graphs:
            self._capture(bs, width)
        g, out = self.graphs[(bs, width)]
        g.replay()
        return out[:B].clone()          # the static output is overwritten by the next replay
