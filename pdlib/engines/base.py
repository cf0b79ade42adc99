"""What every engine is: the ``Engine`` protocol and the one profiling-grid type.

An engine serves a workload under an exclusive-batching policy and returns
``records.RunResult`` (per-step ``StepLog`` + per-request dicts + ``meta``), profiles its step
times into ``records.ProfileResult``, and describes itself as a JSON-able dict.

``profile`` takes a ``ProfileGrid`` or its fields as keyword arguments -- exactly the
``profile:`` section of ``params/engines/<name>.yaml`` -- plus engine-specific extras
(``noise`` for the simulator, ``prefill_requests`` for the native and vLLM engines).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Protocol, runtime_checkable

from ..records import ProfileResult, RunResult


@dataclass(frozen=True)
class ProfileGrid:
    """Prefill samples at each total prompt size in ``prefill_tokens``; decode samples at
    each batch in ``decode_batches`` x context length in ``context_lens``; ``repeats`` each."""

    prefill_tokens: tuple = (128, 256, 512, 1024, 2048)
    decode_batches: tuple = (1, 2, 4, 8, 16, 32, 64)
    context_lens: tuple = (128, 512)
    repeats: int = 3

    def __post_init__(self):
        for f in ("prefill_tokens", "decode_batches", "context_lens"):
            v = tuple(int(x) for x in getattr(self, f))
            if not v or min(v) < 1:
                raise ValueError(f"{f} must be a non-empty list of integers >= 1, got {getattr(self, f)!r}")
            object.__setattr__(self, f, v)
        if int(self.repeats) != self.repeats or self.repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        object.__setattr__(self, "repeats", int(self.repeats))

    @classmethod
    def spanning(cls, N: int, *, mean_input: float, p95_input: float, p95_context: float, repeats: int = 2,
                 prefill_points: int = 5, context_points: int = 3) -> ProfileGrid:
        """The grid a run of N slots on a workload needs (issue 15, item 2), log-spaced so that it
        stays affordable on a small CPU:

        * ``decode_batches``: 1, 2, 4, ... up to N, N included (a decode step of a run has
          batch 1..N; at N = 1 batch 2 too, for a fit needs two batches);
        * ``context_lens``: ``context_points`` from p95_context/8 to the workload's p95 of
          input + output tokens (what a decoding request holds);
        * ``prefill_tokens``: ``prefill_points`` from k x mean input at k = 1 to N x p95 input
          (a refill of k <= N prompts); engines cap what exceeds their batch-token or model
          length limits and say so in ``meta["capped"]``."""
        N = int(N)
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N!r}")
        for name, v in (("mean_input", mean_input), ("p95_input", p95_input), ("p95_context", p95_context)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 1):
                raise ValueError(f"{name} must be a finite number >= 1 token, got {v!r}")
        batches = sorted({min(2 ** i, N) for i in range(N.bit_length() + 1)} | ({2} if N == 1 else set()))
        prefill = log_points(mean_input, N * p95_input, prefill_points)
        ctx_hi = math.ceil(p95_context)
        return cls(prefill_tokens=prefill if len(prefill) > 1 else (prefill[0], 2 * prefill[0]),
                   decode_batches=tuple(batches),
                   context_lens=log_points(max(1.0, ctx_hi / 8), ctx_hi, context_points), repeats=repeats)

    @classmethod
    def resolve(cls, grid: ProfileGrid | None, default: ProfileGrid, kwargs: dict) -> tuple[ProfileGrid, dict]:
        """(grid, the other kwargs): ``grid`` (or ``default``) with the grid fields in ``kwargs`` replaced."""
        names = {f.name for f in fields(cls)}
        over = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        return replace(grid if grid is not None else default, **over), rest


def cap_tokens(tokens, limit: int, why: str) -> tuple[list, list]:
    """(prefill sizes with those above ``limit`` replaced by ``limit``, one line per cap saying why)."""
    out, notes = [], []
    for T in tokens:
        if T > limit:
            notes.append(f"prefill {T} tokens capped at {limit} ({why})")
            T = limit
        if T >= 1 and T not in out:
            out.append(T)
    return out, notes


def with_context_range(prof: ProfileResult) -> ProfileResult:
    """The profile with its fit's context-length range recorded (``TimingModel.context_range``)."""
    ctx = [r["context_len"] for r in prof.decode if r.get("context_len") is not None]
    if ctx:
        prof.timing = prof.timing.with_ranges(context=ctx)
    return prof


def log_points(lo: float, hi: float, n: int) -> tuple:
    """``n`` integers log-spaced from ``lo`` to ``hi`` (both rounded, duplicates dropped)."""
    lo, hi = max(1, round(lo)), max(1, round(hi))
    if n < 2 or hi <= lo:
        return (max(lo, hi),)
    r = (hi / lo) ** (1 / (n - 1))
    return tuple(sorted({round(lo * r ** i) for i in range(n - 1)} | {hi}))


@runtime_checkable
class Engine(Protocol):
    name: str

    def run(self, workload, policy, *, termination: str = "dataset", max_tokens: int | None = None,
            progress: bool = False) -> RunResult:
        """Serve every request of ``workload`` in order under ``policy`` (a FixedK/DynamicKStar or an
        ``ExclusiveBatching``); ``termination="dataset"`` stops each at its reference length,
        ``"model"`` at EOS or ``max_tokens``."""

    def profile(self, grid: ProfileGrid | None = None, **kwargs) -> ProfileResult:
        """Step-time samples over the grid, fitted with ``theory.fit_timing``."""

    def describe(self) -> dict:
        """The engine's configuration (JSON-able)."""
