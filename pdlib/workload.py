"""Workload types: what ``pdlib.data`` produces and every engine consumes.

A ``Request`` carries its prompt token ids when the source has text, and always
its input length and reference output length (tokens). Length-only workloads
(traces, synthetic) have ``prompt_ids=None``; engines that need ids synthesise
them deterministically from the length (``Workload.prompt_ids_for``).
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

MAX_TOKENS = 10**9        # the largest token count a workload accepts (input or output, per request)
MAX_TOKENS_TEXT = "10^9"


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
        return _lengths(self.requests, "input_len")

    @property
    def output_lens(self) -> np.ndarray:
        return _lengths(self.requests, "output_len")

    def paired_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) token counts as the length-aware theory reads them: an output of 0 tokens
        counts as 1 (every request decodes at least its first token)."""
        return self.input_lens, np.maximum(self.output_lens, 1)

    @property
    def num_truncated(self) -> int:
        return sum(r.truncated for r in self.requests)

    def head(self, n: int) -> Workload:
        return Workload(self.name, self.requests[:n], self.skipped, dict(self.meta, num_requests=n))

    @classmethod
    def from_lengths(cls, name, input_lens, output_lens, **meta) -> Workload:
        reqs = [Request(id=str(i), input_len=check_tokens(a, f"input_lens[{i}]", allow_zero=True),
                        output_len=check_tokens(b, f"output_lens[{i}]", allow_zero=True))
                for i, (a, b) in enumerate(zip(input_lens, output_lens))]
        return cls(name, reqs, [], meta)

    @staticmethod
    def prompt_ids_for(req: Request, vocab_size: int, seed: int = 0) -> list[int]:
        """The request's token ids, or deterministic ids of the right length for length-only sources."""
        if req.prompt_ids is not None:
            return list(req.prompt_ids)
        rng = np.random.default_rng([seed, zlib.crc32(req.id.encode())])
        return rng.integers(1, max(2, vocab_size - 1), size=req.input_len).tolist()


def check_tokens(n, name: str, *, allow_zero: bool = False) -> int:
    """``n`` as an int token count in ``1..MAX_TOKENS`` (``0..`` with ``allow_zero``), else a
    ``ValueError`` naming ``name`` and the allowed range (checked before anything is allocated)."""
    lo = 0 if allow_zero else 1
    try:
        v = int(n)
        ok = v == n and lo <= v <= MAX_TOKENS and not isinstance(n, bool)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} = {n!r}: allowed {lo}..{MAX_TOKENS_TEXT} tokens (an integer)")
    return v


def _lengths(requests, attr: str) -> np.ndarray:
    try:
        return np.array([getattr(r, attr) for r in requests], dtype=np.int64)
    except (OverflowError, TypeError, ValueError):
        for r in requests:      # name the first request that does not fit
            check_tokens(getattr(r, attr), f"request {r.id}: {attr}", allow_zero=True)
        raise


def skip_field(reason: str) -> str:
    """The field part of a skip reason (``"output: empty"`` -> ``"output"``)."""
    return reason.split(":")[0] if ":" in reason else reason


def skip_kind(reason: str) -> str:
    """A skip reason without its details in parentheses (``"ContextTokens: negative (-5)"`` ->
    ``"ContextTokens: negative"``), so that reasons can be counted."""
    return reason.split(" (")[0].strip()


def skip_reason_counts(skipped) -> dict[str, int]:
    """``{reason kind: count}`` over a workload's skips, most frequent first."""
    return dict(Counter(skip_kind(s.reason) for s in skipped).most_common())


def first_skips(skipped, n: int = 3) -> str:
    """The first ``n`` skips as ``record I: reason; ...`` for an error message."""
    return "; ".join(f"record {s.index}: {s.reason}" for s in skipped[:n]) or "no skips"
