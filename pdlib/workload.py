"""Workload types: what ``pdlib.data`` produces and every engine consumes.

A ``Request`` carries its prompt token ids when the source has text, and always
its input length and reference output length (tokens). Length-only workloads
(traces, synthetic) have ``prompt_ids=None``; engines that need ids synthesise
them deterministically from the length (``Workload.prompt_ids_for``).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Request:
    id: str
    input_len: int
    output_len: int                       # reference output length, tokens (after any cap)
    prompt_ids: list[int] | None = None
    prompt: str | None = None
    source_id: str | None = None
    truncated: bool = False               # output_len was capped by max_output_tokens


@dataclass(slots=True)
class Skip:
    index: int                            # record index in the source
    reason: str
    source_id: str | None = None


@dataclass
class Workload:
    name: str
    requests: list[Request]
    skipped: list[Skip] = field(default_factory=list)
    meta: dict = field(default_factory=dict)   # dataset spec, tokenizer, file, counts

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def input_lens(self) -> np.ndarray:
        return np.array([r.input_len for r in self.requests], dtype=np.int64)

    @property
    def output_lens(self) -> np.ndarray:
        return np.array([r.output_len for r in self.requests], dtype=np.int64)

    @property
    def num_truncated(self) -> int:
        return sum(r.truncated for r in self.requests)

    def head(self, n: int) -> "Workload":
        return Workload(self.name, self.requests[:n], self.skipped, dict(self.meta, num_requests=n))

    @classmethod
    def from_lengths(cls, name, input_lens, output_lens, **meta) -> "Workload":
        reqs = [Request(id=str(i), input_len=int(a), output_len=int(b))
                for i, (a, b) in enumerate(zip(input_lens, output_lens))]
        return cls(name, reqs, [], meta)

    @staticmethod
    def prompt_ids_for(req: Request, vocab_size: int, seed: int = 0) -> list[int]:
        """The request's token ids, or deterministic ids of the right length for length-only sources."""
        if req.prompt_ids is not None:
            return list(req.prompt_ids)
        rng = np.random.default_rng([seed, zlib.crc32(req.id.encode())])
        return rng.integers(1, max(2, vocab_size - 1), size=req.input_len).tolist()
