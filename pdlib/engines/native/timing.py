"""Step timing of the native engine: CUDA events around each step's device work, read once at
the end (no per-step synchronisation); ``time.perf_counter`` on CPU, or with ``clock="cpu"``
this process's CPU time (``time.process_time``: what a step costs on an oversubscribed CPU
machine, like the vLLM engine's ``step_timer="cpu_s"``)."""
from __future__ import annotations

import time

import torch


class StepTimer:
    """``t0 = start()`` ... ``stop(t0)`` per step; ``collect()`` -> seconds per step, in order."""

    def __init__(self, device, clock: str = "wall"):
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        self.cuda = torch.device(device).type == "cuda"
        self.now = time.process_time if clock == "cpu" else time.perf_counter
        self.marks = []

    def start(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return self.now()

    def stop(self, start) -> None:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append((start, e))
        else:
            self.marks.append(self.now() - start)

    def collect(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            out = [s.elapsed_time(e) / 1e3 for s, e in self.marks]
        else:
            out = list(self.marks)
        self.marks = []
        return out
