"""vLLM's own per-iteration details, collected through its stat-logger hook.

With ``enable_logging_iteration_details=True`` every engine step's ``SchedulerStats``
carries ``iteration_details`` (prefill/"context" and generation request/token counts and
``elapsed_ms``, the engine core's time around the forward). ``IterationDetailsLogger``
keeps them in a list the driver reads after a run. vLLM labels the re-prefill of a
preempted request as "generation"; pdlib's own telemetry (``scheduler.py``) does not.
"""
from __future__ import annotations

from vllm.v1.metrics.loggers import StatLoggerBase


class IterationDetailsLogger(StatLoggerBase):
    rows: list[dict] = []          # replaced per instance; class attribute only for typing

    def __init__(self, vllm_config, engine_index: int = 0):
        self.rows = []

    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0, **kw):
        d = getattr(scheduler_stats, "iteration_details", None) if scheduler_stats is not None else None
        if d is None or d.is_dummy:
            return
        self.rows.append({"iteration": d.iteration_index, "ctx_requests": d.num_ctx_requests,
                          "ctx_tokens": d.num_ctx_tokens, "gen_requests": d.num_generation_requests,
                          "gen_tokens": d.num_generation_tokens, "elapsed_ms": d.elapsed_ms})

    def log_engine_initialized(self):
        pass


class IterationDetailsFactory:
    """A stat-logger factory that remembers the logger it built (one engine, index 0)."""

    def __init__(self):
        self.logger: IterationDetailsLogger | None = None

    def __call__(self, vllm_config, engine_index: int = 0):
        self.logger = IterationDetailsLogger(vllm_config, engine_index)
        return self.logger

    def take(self) -> list[dict]:
        if self.logger is None:
            return []
        rows, self.logger.rows = self.logger.rows, []
        return rows
