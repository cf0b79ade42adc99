"""pdlib's paged KV cache: one pool of pages per layer, pages owned by requests.

Capacity is a whole number of pages (``capacity_tokens`` rounded down to a page multiple).
A request holds ``ceil(tokens/page_size)`` pages; ``tokens_held`` counts tokens (the exact
figure the theory uses), ``page_tokens_held`` what the pages could hold (page rounding).
One extra scratch page (not counted in capacity) absorbs the writes of padded rows in a
CUDA-graph bucket. Refusals raise ``KVCapacityError`` naming the numbers.
"""
from __future__ import annotations

import numpy as np
import torch


class KVCapacityError(ValueError):
    """A request (or an admission, or a decode step) does not fit in the KV capacity."""


class KVCache:
    def __init__(self, *, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device, capacity_tokens: int, page_size: int):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.page_size = int(page_size)
        self.num_pages = int(capacity_tokens) // self.page_size
        if self.num_pages < 1:
            raise KVCapacityError(f"KV capacity of {capacity_tokens} tokens is less than one page "
                                  f"({self.page_size} tokens)")
        self.capacity_tokens = self.num_pages * self.page_size
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.dtype = dtype
        shape = (num_layers, self.num_pages + 1, self.page_size, kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.scratch_page = self.num_pages
        self.bytes_per_token = 2 * num_layers * kv_heads * head_dim * self.k.element_size()
        self._free = list(range(self.num_pages - 1, -1, -1))   # stack: pop() gives the lowest page
        self.pages: dict = {}
        self.lens: dict = {}

    @staticmethod
    def tokens_for_bytes(budget_bytes: int, bytes_per_token: int, page_size: int) -> int:
        """Token capacity of a byte budget for the pool, whole pages only."""
        return (int(budget_bytes) // (bytes_per_token * page_size)) * page_size

    # ----------------------------------------------------------------- accounting
    @property
    def pool_bytes(self) -> int:
        """Bytes of the K and V pools (including the scratch page)."""
        return self.k.numel() * self.k.element_size() * 2

    @property
    def tokens_held(self) -> int:
        return sum(self.lens.values())

    @property
    def pages_held(self) -> int:
        return self.num_pages - len(self._free)

    @property
    def page_tokens_held(self) -> int:
        return self.pages_held * self.page_size

    @property
    def bytes_held(self) -> int:
        """Bytes of the KV entries of the tokens held (exact, no page rounding)."""
        return self.tokens_held * self.bytes_per_token

    @property
    def free_tokens(self) -> int:
        """Tokens in free pages (new requests can use only these)."""
        return len(self._free) * self.page_size

    def pages_needed(self, n_tokens: int) -> int:
        return -(-int(n_tokens) // self.page_size)

    def _describe(self) -> str:
        return (f"{self.tokens_held} of {self.capacity_tokens} tokens held by {len(self.lens)} requests "
                f"({self.pages_held} of {self.num_pages} pages of {self.page_size})")

    # ----------------------------------------------------------------- allocation
    def allocate(self, rid, n_tokens: int) -> None:
        """Reserve ``n_tokens`` for a new request ``rid``."""
        if rid in self.lens:
            raise ValueError(f"request {rid!r} already holds KV pages")
        need = self.pages_needed(n_tokens)
        if need > len(self._free):
            raise KVCapacityError(f"request {rid!r} needs {n_tokens} KV tokens ({need} pages) but only "
                                  f"{len(self._free)} pages are free: {self._describe()}")
        self.pages[rid] = [self._free.pop() for _ in range(need)]
        self.lens[rid] = int(n_tokens)

    def grow(self, rid, n_tokens: int = 1) -> None:
        """Reserve ``n_tokens`` more for ``rid`` (a new page when the last one is full)."""
        new = self.lens[rid] + int(n_tokens)
        need = self.pages_needed(new) - len(self.pages[rid])
        if need > len(self._free):
            raise KVCapacityError(f"request {rid!r} needs {need} more KV page(s) to grow to {new} tokens but "
                                  f"{len(self._free)} are free: {self._describe()}")
        for _ in range(need):
            self.pages[rid].append(self._free.pop())
        self.lens[rid] = new

    def free(self, rid) -> None:
        self._free.extend(reversed(self.pages.pop(rid)))
        del self.lens[rid]

    def reset(self) -> None:
        for rid in list(self.lens):
            self.free(rid)
        self._free.sort(reverse=True)

    # ----------------------------------------------------------------- addressing
    def slots(self, rid, start: int, end: int) -> np.ndarray:
        """Flat slot indices (page*page_size + offset) of token positions start..end-1 of ``rid``."""
        pos = np.arange(start, end)
        pages = np.asarray(self.pages[rid], dtype=np.int64)[pos // self.page_size]
        return pages * self.page_size + pos % self.page_size

    def block_table(self, rids, width: int | None = None) -> np.ndarray:
        """[len(rids), width] int32 page table, padded with the scratch page."""
        width = width or max((len(self.pages[r]) for r in rids), default=1)
        bt = np.full((len(rids), width), self.scratch_page, dtype=np.int32)
        for i, r in enumerate(rids):
            p = self.pages[r]
            bt[i, :len(p)] = p
        return bt

    def layer_views(self, layer: int):
        """(k, v) of one layer as [num_pages+1, page_size, kv_heads, head_dim]."""
        return self.k[layer], self.v[layer]
