"""What every engine is: the ``Engine`` protocol and the one profiling-grid type.

An engine serves a workload under an exclusive-batching policy and returns
``records.RunResult`` (per-step ``StepLog`` + per-request dicts + ``meta``), profiles its step
times into ``records.ProfileResult``, and describes itself as a JSON-able dict.

``profile`` takes a ``ProfileGrid`` or its fields as keyword arguments -- exactly the
``profile:`` section of ``params/engines/<name>.yaml`` -- plus engine-specific extras
(``noise`` for the simulator, ``prefill_requests`` for the native and vLLM engines).
"""
from __future__ import annotations

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
    def resolve(cls, grid: ProfileGrid | None, default: ProfileGrid, kwargs: dict) -> tuple[ProfileGrid, dict]:
        """(grid, the other kwargs): ``grid`` (or ``default``) with the grid fields in ``kwargs`` replaced."""
        names = {f.name for f in fields(cls)}
        over = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        return replace(grid if grid is not None else default, **over), rest


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
