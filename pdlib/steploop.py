"""The one step loop of exclusive batching: waiting queue, active batch, finishes, records.

``run_steps`` asks ``policy.ExclusiveBatching`` for every decision and keeps the books; what a
step *does* comes from a ``StepBackend``: the native engine runs its model there, the literal
simulator (``pdlib.sim.simulate_stepwise``) only counts. Per step the loop

* pops ``n`` requests off the queue (queue order) and calls ``backend.prefill(rows, step)``, or
  calls ``backend.decode(active, step)`` for the whole active batch;
* counts one generated token per row (a prefill emits token 1); a row finishes when the
  backend flags it (EOS; ``None`` = no flags) or when it reaches its target length (then it is
  ``truncated`` if the backend was flagging EOS);
* calls ``backend.release(finished, active, phase, step)`` (free the finished, reserve the
  survivors' next slot), feeds the finished lengths to the policy, and records a
  ``records.StepRecord``: KV tokens held after the step = sum over active requests of
  ``input + generated``, ``k`` = the policy's k when the step ran, ids in queue order.

Step durations come from ``backend.durations()`` once, after the last step (a GPU backend
reads its CUDA events there, so the loop never synchronises).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .policy import ExclusiveBatching
from .records import StepLog, StepRecord


class StepBackend(Protocol):
    def prefill(self, rows: list[int], step: int) -> Sequence[bool] | None:
        """Prefill requests ``rows`` (queue indices) in one step; EOS flag per row or None."""

    def decode(self, rows: list[int], step: int) -> Sequence[bool] | None:
        """One decode step over the active batch ``rows``; EOS flag per row or None."""

    def release(self, finished: list[int], active: list[int], phase: str, step: int) -> None:
        """After a step: ``finished`` left the batch, ``active`` stays."""

    def durations(self) -> list[float]:
        """Seconds per step, in step order (called once, after the last step)."""


@dataclass(slots=True)
class RequestState:
    """One request's books: its input and target lengths, tokens generated so far, the steps
    that admitted and finished it (None: not yet), whether it stopped at the target under EOS checks."""

    input_len: int
    target: int
    generated: int = 0
    admit_step: int | None = None
    finish_step: int | None = None
    truncated: bool = False


@dataclass
class LoopResult:
    """The run's ``log`` and one ``RequestState`` per request (queue order)."""

    log: StepLog
    requests: list[RequestState]

    @property
    def num_steps(self) -> int:
        return len(self.log)


def run_steps(sched: ExclusiveBatching, backend: StepBackend, *, ids: Sequence, input_lens: Sequence[int],
              targets: Sequence[int], kv_bytes_per_token: int | None = None, max_steps: int | None = None,
              progress: bool = False) -> LoopResult:
    """Serve requests ``0..len(ids)-1`` in queue order; request i stops after ``targets[i]``
    tokens (or at EOS). ``max_steps`` cuts the run."""
    reqs = [RequestState(int(a), int(t)) for a, t in zip(input_lens, targets, strict=True)]
    waiting, active, records = deque(range(len(reqs))), [], []
    bar = _progress(len(reqs), progress)
    step = 0
    while max_steps is None or step < max_steps:
        k_now = int(sched.k)
        phase, m = sched.next_action(len(active), len(waiting))
        if phase == "done":
            break
        if phase == "prefill":
            rows = [waiting.popleft() for _ in range(m)]
            for i in rows:
                reqs[i].admit_step = step
            eos = backend.prefill(rows, step)
            tokens = sum(reqs[i].input_len for i in rows)
        else:
            rows = active
            eos = backend.decode(rows, step)
            tokens = len(rows)
        done = []
        for j, i in enumerate(rows):
            r = reqs[i]
            r.generated += 1
            if (eos is not None and eos[j]) or r.generated >= r.target:
                r.truncated = eos is not None and not eos[j]
                r.finish_step = step
                done.append(i)
        active = [i for i in (active + rows if phase == "prefill" else active) if reqs[i].finish_step is None]
        backend.release(done, active, phase, step)
        sched.on_finished([reqs[i].generated for i in done])
        kv = sum(reqs[i].input_len + reqs[i].generated for i in active)
        records.append(StepRecord(
            step=step, phase=phase, batch_size=len(rows), tokens=tokens, kv_tokens=kv, duration_s=0.0, k=k_now,
            kv_bytes=kv * kv_bytes_per_token if kv_bytes_per_token else None, finished=[ids[i] for i in done],
            admitted=[ids[i] for i in rows] if phase == "prefill" else []))
        if bar is not None and done:
            bar.update(len(done))
        step += 1
    if bar is not None:
        bar.close()
    log = StepLog()
    for rec, d in zip(records, backend.durations(), strict=True):
        rec.duration_s = d
        log.append(rec)
    return LoopResult(log, reqs)


def _progress(total, on):
    if not on:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="requests", unit="req")
