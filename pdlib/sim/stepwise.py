"""The literal simulator: ``pdlib.steploop`` -- the loop the native engine runs -- with a
backend that only counts (step durations from the timing model)."""

from __future__ import annotations

from ..policy import ExclusiveBatching
from ..records import StepLog
from ..steploop import run_steps
from .events import DEFAULT_TIMING, as_policy


class _CountingBackend:
    """Nothing to compute: every step costs what the timing model says."""

    def __init__(self, input_lens, timing):
        self.input_lens, self.timing, self.seconds = input_lens, timing, []

    def prefill(self, rows, step):
        self.seconds.append(float(self.timing.prefill_time(sum(self.input_lens[i] for i in rows))))

    def decode(self, rows, step):
        self.seconds.append(float(self.timing.decode_time(len(rows))))

    def release(self, finished, active, phase, step):
        pass

    def durations(self):
        return self.seconds


def simulate_stepwise(
    N: int,
    policy_or_k,
    workload,
    *,
    timing=None,
    max_tokens=None,
    kv_bytes_per_token=None,
    steps: int | None = None,
) -> StepLog:
    """The literal simulator: one Python iteration per step, asking ``ExclusiveBatching``
    for every decision. Slow; it exists so tests (and sceptics) can check that
    ``simulate`` produces the identical log. Ids are the workload's request ids."""
    pol = as_policy(int(N), policy_or_k)
    reqs = workload.requests
    inputs = [r.input_len for r in reqs]
    targets = [r.output_len if max_tokens is None else min(r.output_len, max_tokens) for r in reqs]
    backend = _CountingBackend(inputs, DEFAULT_TIMING if timing is None else timing)
    res = run_steps(ExclusiveBatching(pol), backend, ids=[r.id for r in reqs], input_lens=inputs, targets=targets,
                    kv_bytes_per_token=kv_bytes_per_token, max_steps=steps)
    return res.log
