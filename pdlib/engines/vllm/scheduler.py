"""Exclusive batching inside stock vLLM (V1) through its ``scheduler_cls`` hook.

``ExclusiveBatchingScheduler`` subclasses ``vllm.v1.core.sched.scheduler.Scheduler``
and overrides only ``schedule`` and ``update_from_output``; vLLM's own files are not
touched. Each ``schedule`` call asks ``pdlib.policy.ExclusiveBatching`` (the object the
simulator and the native runner execute) for the step and then calls
``super().schedule()`` exactly once (a second call would drop the finished/preempted ids
the worker must see):

* decode-only step: ``max_num_active_reqs`` is capped at ``len(running)``, so vLLM's
  waiting loop admits nobody;
* prefill-only step (phases 0 and 2): ``running`` is restricted to requests still
  mid-prefill (a chunked refill) for the duration of the call and
  ``max_num_active_reqs`` set to admit exactly the requests the policy asked for; the
  decoders are put back in front afterwards (FCFS order kept, so preemption still picks
  the newest request).

``mode="mb"`` (``TelemetryScheduler``) is vLLM's stock mixed batching with the same
telemetry. ``AsyncExclusiveBatchingScheduler`` / ``AsyncTelemetryScheduler`` are the
variants for GPUs, where vLLM schedules asynchronously (there ``schedule(t+1)`` runs
before ``update_from_output(t)``, so completions are seen one step late).

Configuration comes through ``EngineArgs(additional_config={"pdlib": {...}})``:
``mode`` (``"eb"``/``"mb"``), ``telemetry_path`` (JSONL written by the engine-core
process; needed in multiprocess mode). A run's policy arrives with its requests in
``SamplingParams.extra_args["pdlib"] = {"run": id, "policy": spec}`` (``spec`` as for
``pdlib.policy.make_policy`` plus ``timing``/``mu_L`` for the dynamic policy); in-process
the driver may instead hand over the very policy object with ``pdlib_set_run``.

KV tokens (telemetry ``kv_tokens``, the shared ``StepRecord.kv_tokens``) follow the
definition every pdlib engine uses: after a step, the sum over running requests of
prompt + output tokens generated so far (``Request.num_tokens``; the token sampled at the
end of a prefill counts, so a request holds ``I + 1`` right after its prefill, as in
``pdlib.sim``); a request still mid-prefill (chunked) counts the prompt tokens computed so
far. vLLM's own count, ``sum(num_computed_tokens)``, is one token lower per decoding
request (the newest token's KV is written by the next forward) and is kept as
``kv_computed_tokens``; ``blocks_used`` x ``block_size`` (``kv_block_tokens``) is what the
block pool actually holds (>= ``kv_computed_tokens``, rounded up to whole blocks per
request; it can be one token short of ``kv_tokens`` only when a request's newest token
starts a new block, which vLLM allocates in the next ``schedule``).
"""
from __future__ import annotations

import json
import time
from collections import deque

from ...policy import ExclusiveBatching, make_policy
from ...theory import TimingModel
from .version import check_vllm_version

check_vllm_version()      # another vLLM fails here with one line, not deep inside its engine core

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler

CONFIG_KEY = "pdlib"


def policy_spec(policy) -> dict:
    """A JSON-able description of a policy from which ``policy_from_spec`` rebuilds it."""
    spec = dict(policy.describe())
    if spec["policy"] == "dynamic":
        spec = {"policy": "dynamic", "N": policy.N, "p0": policy.p, "ema_alpha": policy.ema_alpha,
                "update_interval": policy.update_interval, "mu_L": policy.mu_L,
                "estimator": policy.estimator, "timing": policy.timing.as_kwargs()}
    return spec


def policy_from_spec(spec: dict):
    timing = TimingModel.from_dict(spec["timing"]) if spec.get("timing") else None
    return make_policy(spec, timing=timing, mu_L=float(spec.get("mu_L", 0.0)))


def kv_tokens_held(req) -> int:
    """KV tokens a running request holds after ``update_from_output``, in pdlib's shared
    definition (``pdlib.records``/``pdlib.sim``): prompt + output tokens generated so far
    (``req.num_tokens``, which already includes the token sampled in this step). A request
    still mid-prefill (a chunked prompt, ``is_prefill_chunk``) has sampled nothing and
    holds only the prompt tokens computed so far (``num_computed_tokens``)."""
    return req.num_computed_tokens if req.is_prefill_chunk else req.num_tokens


class _PdlibMixin:
    """Per-step telemetry (both modes) and the exclusive-batching step (mode ``eb``)."""

    pdlib_mode = "eb"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = dict((self.vllm_config.additional_config or {}).get(CONFIG_KEY, {}))
        self.pdlib_mode = cfg.get("mode", type(self).pdlib_mode)
        if self.pdlib_mode not in ("eb", "mb"):
            raise ValueError(f"additional_config['pdlib']['mode'] must be 'eb' or 'mb', got {self.pdlib_mode!r}")
        self.pdlib_telemetry_path = cfg.get("telemetry_path")
        self.pdlib_steps: list[dict] = []       # telemetry rows of the current run
        self.pdlib_run = None                   # run id
        self.pdlib_eb: ExclusiveBatching | None = None
        self._pdlib_pending: deque = deque()    # rows waiting for their update_from_output
        self._pdlib_refill_left = 0             # requests a chunked refill still has to admit
        self._pdlib_refill = -1                 # refill counter (groups multi-step prefills)
        self._pdlib_fh = None
        self._pdlib_cap0 = self.max_num_active_reqs

    # ------------------------------------------------------------------ run control
    def pdlib_set_run(self, run_id, policy) -> None:
        """Start a run with this policy object (in-process use: shares the caller's object)."""
        self.pdlib_run = run_id
        self.pdlib_eb = ExclusiveBatching(policy) if policy is not None else None
        # mixed batching uses the policy's N as its slot count (the engine may have more)
        self.max_num_active_reqs = min(self._pdlib_cap0, policy.N) if policy is not None else self._pdlib_cap0
        self.pdlib_steps = []
        self._pdlib_refill_left = 0
        self._pdlib_refill = -1

    def _pdlib_check_new_run(self) -> None:
        for q in (self.waiting, self.kv_holding_waiting):
            for req in q:
                extra = (req.sampling_params.extra_args or {}).get(CONFIG_KEY) if req.sampling_params else None
                if extra and extra.get("run") != self.pdlib_run:
                    spec = extra.get("policy")
                    self.pdlib_set_run(extra.get("run"), policy_from_spec(spec) if spec else None)
                return

    def has_requests(self) -> bool:
        # Multiprocess: the run's requests reach the engine core one message at a time and
        # its busy loop would start stepping on the first; hold the first step of a run
        # until all ``n`` have arrived (everything is queued at t=0, as in the theory).
        if not self.running and not self.finished_req_ids:
            q = self.kv_holding_waiting or self.waiting
            if q:
                req = q.peek_request()
                extra = (req.sampling_params.extra_args or {}).get(CONFIG_KEY) if req.sampling_params else None
                if extra and extra.get("run") != self.pdlib_run and \
                        len(self.waiting) + len(self.kv_holding_waiting) < int(extra.get("n", 0)):
                    return False
        return super().has_requests()

    # ------------------------------------------------------------------ schedule
    def schedule(self, throttle_prefills: bool = False):
        t0 = time.perf_counter()
        if not self.running:
            self._pdlib_check_new_run()
        pre_chunk = {r.request_id for r in self.running if r.is_prefill_chunk}
        k = self.pdlib_eb.k if self.pdlib_eb is not None else 0
        if self.pdlib_mode == "eb" and self.pdlib_eb is not None:
            out, refill = self._pdlib_eb_schedule(throttle_prefills, pre_chunk)
        else:
            out, refill = super().schedule(throttle_prefills), None
        self._pdlib_pending.append(self._pdlib_row(out, pre_chunk, k, refill, t0))
        return out

    def _pdlib_eb_schedule(self, throttle_prefills, pre_chunk):
        num_waiting = len(self.waiting) + len(self.kv_holding_waiting)
        chunked = [r for r in self.running if r.request_id in pre_chunk]
        if self._pdlib_refill_left > 0 and not chunked:
            # the last refill step stopped short (token budget or KV): go on only if the
            # next request fits, else give the rest of the refill up and decode
            n = min(self._pdlib_refill_left, num_waiting)
            self._pdlib_refill_left = self._pdlib_fit(n) if self.running else n
        if chunked or self._pdlib_refill_left > 0:
            # a refill whose prompts did not fit in one step's token budget goes on
            n = min(self._pdlib_refill_left, num_waiting)
            return self._pdlib_prefill(throttle_prefills, chunked, n), self._pdlib_refill
        action, n = self.pdlib_eb.next_action(len(self.running), num_waiting)
        if action == "prefill" and self.running:
            n = self._pdlib_fit(n)
            if n == 0:          # the first waiting request does not fit in KV: keep decoding
                action = "decode"
        if action == "prefill":
            self._pdlib_refill += 1
            self._pdlib_refill_left = n
            return self._pdlib_prefill(throttle_prefills, [], n), self._pdlib_refill
        cap = self.max_num_active_reqs
        self.max_num_active_reqs = len(self.running)     # waiting loop admits nobody
        try:
            return super().schedule(throttle_prefills), None
        finally:
            self.max_num_active_reqs = cap

    def _pdlib_prefill(self, throttle_prefills, keep, n):
        """One prefill-only step: only ``keep`` (mid-prefill) plus up to ``n`` new requests."""
        cap = self.max_num_active_reqs
        keep_ids = {r.request_id for r in keep}
        others = [r for r in self.running if r.request_id not in keep_ids]
        self.running = list(keep)
        self.max_num_active_reqs = len(keep) + n
        try:
            out = super().schedule(throttle_prefills)
        finally:
            self.max_num_active_reqs = cap
            self.running = others + self.running
        admitted = len(out.scheduled_new_reqs) + len(out.scheduled_cached_reqs.resumed_req_ids)
        self._pdlib_refill_left = max(0, self._pdlib_refill_left - admitted)
        return out

    def _pdlib_fit(self, n: int) -> int:
        """Cap a refill so the first waiting request's whole sequence fits in free KV blocks
        (vLLM admits only what fits; an empty refill would waste a step)."""
        q = self.kv_holding_waiting if self.kv_holding_waiting else self.waiting
        if not q:
            return n
        first = q.peek_request()
        need = -(-first.num_tokens // self.block_size)
        return n if need <= self.kv_cache_manager.block_pool.get_num_free_blocks() else 0

    # ------------------------------------------------------------------ telemetry
    def _pdlib_row(self, out, pre_chunk, k, refill, t0) -> dict:
        new_ids = [r.req_id for r in out.scheduled_new_reqs]
        resumed = set(out.scheduled_cached_reqs.resumed_req_ids)
        prefill_ids = set(new_ids) | resumed | (pre_chunk & set(out.num_scheduled_tokens))
        pt = sum(n for rid, n in out.num_scheduled_tokens.items() if rid in prefill_ids)
        return {
            "run": self.pdlib_run, "step": self.current_step, "refill": refill, "k": k,
            "num_prefill_reqs": len(prefill_ids),
            "num_decode_reqs": len(out.num_scheduled_tokens) - len(prefill_ids),
            "prefill_tokens": pt, "decode_tokens": out.total_num_scheduled_tokens - pt,
            "admitted": new_ids + sorted(resumed),
            "preempted": sorted(out.preempted_req_ids or ()),
            "num_running": len(self.running), "num_waiting": len(self.waiting) + len(self.kv_holding_waiting),
            "_t0": t0,
        }

    def update_from_output(self, scheduler_output, model_runner_output):
        t1 = time.perf_counter()
        before = list(self.running)
        result = super().update_from_output(scheduler_output, model_runner_output)
        row = self._pdlib_pending.popleft() if self._pdlib_pending else None
        if row is None:
            return result
        finished = [r for r in before if r.is_finished()]
        if self.pdlib_eb is not None and finished and self.pdlib_mode == "eb":
            self.pdlib_eb.on_finished([r.num_output_tokens for r in finished])
        pool = self.kv_cache_manager.block_pool
        per_req = {r.request_id: kv_tokens_held(r) for r in self.running}
        row.update(
            finished=[r.request_id for r in finished],
            finished_output_lens=[r.num_output_tokens for r in finished],
            kv_tokens=sum(per_req.values()),
            kv_tokens_per_request=per_req,
            kv_computed_tokens=sum(r.num_computed_tokens for r in self.running),
            blocks_used=(pool.num_gpu_blocks - 1) - pool.get_num_free_blocks(),   # block 0 is the null block
            block_size=self.block_size,
            kv_usage=float(self.kv_cache_manager.usage),
            k_after=self.pdlib_eb.k if self.pdlib_eb is not None else 0,
            core_s=t1 - row.pop("_t0"),
        )
        row["kv_block_tokens"] = row["blocks_used"] * self.block_size
        self.pdlib_steps.append(row)
        if self.pdlib_telemetry_path:
            if self._pdlib_fh is None:
                self._pdlib_fh = open(self.pdlib_telemetry_path, "a", buffering=1)
            self._pdlib_fh.write(json.dumps(row) + "\n")
        return result

    def shutdown(self) -> None:
        if self._pdlib_fh is not None:
            self._pdlib_fh.close()
            self._pdlib_fh = None
        super().shutdown()


class ExclusiveBatchingScheduler(_PdlibMixin, Scheduler):
    """Exclusive batching (phase 0 fill N, phase 1 decode-only until k finish, phase 2
    prefill-only refill) on vLLM's synchronous scheduler, with per-step telemetry."""
    pdlib_mode = "eb"


class AsyncExclusiveBatchingScheduler(_PdlibMixin, AsyncScheduler):
    """Exclusive batching on vLLM's async scheduler (GPUs). Completions reach the policy
    one step late; untested on CPU (the CPU platform turns async scheduling off)."""
    pdlib_mode = "eb"


class TelemetryScheduler(_PdlibMixin, Scheduler):
    """Stock vLLM mixed batching (the baseline, ``mode="mb"``) with the same telemetry."""
    pdlib_mode = "mb"


class AsyncTelemetryScheduler(_PdlibMixin, AsyncScheduler):
    pdlib_mode = "mb"
