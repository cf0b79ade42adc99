"""``SimResult``: what ``simulate`` returns -- the per-step columns (one shape) and the
per-request arrays; the ``StepLog`` view of the same columns is derived on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .. import metrics
from ..records import StepLog


@dataclass
class SimResult:
    """Output of ``simulate``: per-step ``columns`` (numpy; the StepLog schema without
    ``phase`` plus ``is_prefill`` and ``finished_count``; ``finished``/``admitted`` id lists
    only with ``record_steps=True``), per-request arrays (``input_len``, ``output_len`` =
    capped reference length, ``ref_output_len``, ``admit_step``, ``finish_step`` (-1: not
    finished), ``generated``, ``truncated``), the policy's description, ``meta`` and the
    policy's k history. ``log`` is the same columns as a ``StepLog`` (None without ids)."""

    columns: dict
    requests: dict
    policy: dict
    meta: dict
    k_history: list = field(default_factory=list)

    @cached_property
    def log(self) -> StepLog | None:
        c = self.columns
        if "finished" not in c:
            return None
        phase = np.empty(len(c["step"]), dtype=object)
        phase[:] = "decode"
        phase[c["is_prefill"]] = "prefill"
        return StepLog.from_columns(
            step=c["step"],
            phase=phase,
            batch_size=c["batch_size"],
            tokens=c["tokens"],
            kv_tokens=c["kv_tokens"],
            kv_bytes=c["kv_bytes"],
            duration_s=c["duration_s"],
            k=c["k"],
            finished=c["finished"],
            admitted=c["admitted"],
        )

    @property
    def request_steps(self) -> int:
        """Sum of decode batch sizes (request-steps)."""
        c = self.columns
        return int(c["batch_size"][~c["is_prefill"]].sum())

    def summary(self, warmup="auto") -> dict:
        return {
            **metrics.memory_summary(self.columns, warmup=warmup),
            **metrics.throughput_summary(self.columns),
        }
