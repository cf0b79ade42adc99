"""``VLLMEngine``: run a pdlib workload on stock vLLM with exclusive batching or vLLM's own
mixed batching, and profile vLLM's prefill/decode step times.

One engine object owns one ``vllm.v1.engine.llm_engine.LLMEngine`` (built lazily, rebuilt
only when a run needs more slots than it has). ``mode="eb"`` installs
``scheduler.ExclusiveBatchingScheduler`` (``AsyncExclusiveBatchingScheduler`` when vLLM
turns async scheduling on, i.e. on GPUs); ``mode="mb"`` installs
``scheduler.TelemetryScheduler`` (stock scheduling, same telemetry).

Step time (``duration_s``): in-process (``multiprocess=False``, the default) it is the
wall clock around each ``LLMEngine.step()``, which is exactly one schedule + one forward
+ output processing; in multiprocess mode the driver cannot see steps, so it is the
scheduler's own interval from the start of ``schedule()`` to the start of
``update_from_output()`` (schedule + forward + sampling). ``step_timer="cpu_s"`` uses the
driver process's CPU time around ``step()`` instead of the wall clock: on an oversubscribed
CPU machine (in-process vLLM runs torch with one thread) it measures the work, not the
queueing. All three are kept per step (``meta["step_details"]["wall_s"|"cpu_s"|"core_s"]``);
``meta["timing"]`` says which one ``duration_s`` holds.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
import weakref
from pathlib import Path

from ...records import ProfileResult, RunResult, StepLog, StepRecord, request_row
from ...workload import Workload
from ..base import ProfileGrid
from .config import POLICY_DIFFERENCES, build_engine, read_telemetry

TIMERS = {"wall_s": "wall clock", "cpu_s": "this process's CPU time (for oversubscribed CPU machines)"}
_LIVE_INPROC: weakref.WeakSet[VLLMEngine] = weakref.WeakSet()   # engines holding an in-process vLLM
DEFAULT_GRID = ProfileGrid(prefill_tokens=(128, 256, 512, 1024), decode_batches=(1, 2, 4, 8, 16, 32),
                           context_lens=(128,), repeats=3)


class VLLMEngine:
    """Stock vLLM (V1) as a pdlib engine.

    ``model``: a local folder or a Hugging Face id. ``mode``: ``"eb"`` (exclusive batching,
    pdlib's scheduler) or ``"mb"`` (vLLM's mixed batching, the baseline). ``max_num_seqs``
    defaults to the first run's policy N. ``devices`` (e.g. ``"0,1"``) sets
    ``CUDA_VISIBLE_DEVICES`` before vLLM starts. ``engine_kwargs`` go to ``EngineArgs``
    unchanged (anything vLLM accepts).
    """

    name = "vllm"
    TIMERS = TIMERS

    def __init__(self, model, mode: str = "eb", *, dtype: str = "auto", block_size: int | None = None,
                 kv_cache_memory_bytes: int | None = None, max_num_seqs: int | None = None,
                 max_num_batched_tokens: int | None = None, max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, devices: str | None = None, multiprocess: bool = False,
                 enforce_eager: bool | None = None, seed: int = 0, enable_chunked_prefill: bool | None = None,
                 enable_prefix_caching: bool = False, async_scheduling: bool | None = None,
                 gpu_memory_utilization: float | None = None, skip_tokenizer_init: bool | None = None,
                 iteration_details: bool = False, temperature: float = 0.0, keep_output_ids: bool = False,
                 record_per_request_kv: bool = False, step_timer: str = "wall_s",
                 workdir: str | os.PathLike | None = None, engine_kwargs: dict | None = None):
        if mode not in ("eb", "mb"):
            raise ValueError(f"mode must be 'eb' (exclusive batching) or 'mb' (vLLM mixed batching), got {mode!r}")
        if int(tensor_parallel_size) < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size!r}")
        if step_timer not in TIMERS:
            raise ValueError(f"step_timer must be one of {sorted(TIMERS)}, got {step_timer!r}")
        self.step_timer = step_timer
        self.model = str(model)
        self.mode = mode
        self.options = dict(
            dtype=dtype, block_size=block_size, kv_cache_memory_bytes=kv_cache_memory_bytes,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
            max_model_len=max_model_len, tensor_parallel_size=int(tensor_parallel_size), devices=devices,
            multiprocess=bool(multiprocess), enforce_eager=enforce_eager, seed=int(seed),
            enable_chunked_prefill=enable_chunked_prefill, enable_prefix_caching=bool(enable_prefix_caching),
            async_scheduling=async_scheduling, gpu_memory_utilization=gpu_memory_utilization,
            skip_tokenizer_init=skip_tokenizer_init, iteration_details=bool(iteration_details),
            engine_kwargs=dict(engine_kwargs or {}))
        self.temperature = float(temperature)
        self.keep_output_ids = bool(keep_output_ids)
        self.record_per_request_kv = bool(record_per_request_kv)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pdlib-vllm-"))
        self._engine = None
        self._built = None            # config.Built: engine info (slots, vocab, block size, ...)
        self._prompt_seed = 1000

    # ------------------------------------------------------------------ engine lifecycle
    def _ensure(self, num_slots: int):
        if self._engine is not None and num_slots <= self._built.max_num_seqs:
            return self._engine
        self.close()
        self._engine, self._built = build_engine(self.model, self.mode, self.options, num_slots, self.workdir)
        if not self.options["multiprocess"]:
            _LIVE_INPROC.add(self)
        return self._engine

    def close(self) -> None:
        """Shut the vLLM engine down (frees its KV pool and, in multiprocess mode, its processes).

        In-process vLLM engines share the process-wide torch.distributed/model-parallel state,
        and shutting one down tears that state down under the others; while another
        in-process engine is alive, this one is only released (its memory goes with it) and
        the last one to close shuts down."""
        eng, self._engine = self._engine, None
        _LIVE_INPROC.discard(self)
        if eng is None:
            return
        client = eng.engine_core
        if not self.options["multiprocess"] and any(e._engine is not None for e in _LIVE_INPROC):
            fin = getattr(client, "_finalizer", None)
            if fin is not None:
                fin.detach()
            return
        client.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def scheduler(self):
        """The live scheduler object (in-process mode only; ``None`` in multiprocess mode)."""
        if self._engine is None or self.options["multiprocess"]:
            return None
        return self._engine.engine_core.engine_core.scheduler

    # ------------------------------------------------------------------ run
    def run(self, workload: Workload, policy, *, termination: str = "dataset", max_tokens: int | None = None,
            progress: bool = False) -> RunResult:
        """Serve every request of ``workload`` (all queued at t=0) under ``policy``.

        ``termination="dataset"``: each request stops at its reference output length
        (``SamplingParams(max_tokens=ref_len, ignore_eos=True)``), capped by ``max_tokens``;
        ``"model"``: EOS or ``max_tokens`` (default: what fits in ``max_model_len``).
        Requests whose prompt plus output cannot fit in ``max_model_len`` are skipped and
        listed in ``meta["skipped"]`` with the reason.
        """
        if termination not in ("dataset", "model"):
            raise ValueError(f"termination must be 'dataset' or 'model', got {termination!r}")
        eng = self._ensure(policy.N)
        b = self._built
        run_id = uuid.uuid4().hex[:12]
        jobs, skipped = [], []
        for req in workload.requests:
            ids = Workload.prompt_ids_for(req, b.vocab_size)
            if termination == "dataset":
                n_out = max(1, int(req.output_len) if max_tokens is None else min(int(req.output_len), int(max_tokens)))
            else:
                n_out = int(max_tokens) if max_tokens is not None else b.max_model_len - len(ids)
            if not ids:
                skipped.append({"id": req.id, "reason": "empty prompt"})
                continue
            if len(ids) + n_out > b.max_model_len:
                skipped.append({"id": req.id, "reason": f"input {len(ids)} + output {n_out} tokens > "
                                f"max_model_len {b.max_model_len}"})
                continue
            jobs.append((req, ids, n_out))
        if not jobs:
            raise ValueError(f"workload {workload.name!r}: no request fits (skipped: {skipped[:3]} ...)")
        steps, outs, details = self._drive(eng, run_id, policy, jobs, termination, progress)
        return self._result(workload, policy, run_id, jobs, skipped, steps, outs, details, termination, max_tokens)

    def _drive(self, eng, run_id, policy, jobs, termination, progress):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from .scheduler import CONFIG_KEY, policy_spec

        sched = self.scheduler
        if sched is not None:
            sched.pdlib_set_run(run_id, policy)          # in-process: the caller's very object
        extra = {CONFIG_KEY: {"run": run_id, "n": len(jobs), "policy": policy_spec(policy)}}
        for req, ids, n_out in jobs:
            sp = SamplingParams(max_tokens=n_out, ignore_eos=(termination == "dataset"),
                                temperature=self.temperature, seed=self.options["seed"],
                                detokenize=False, extra_args=extra)
            eng.add_request(f"{run_id}:{req.id}", TokensPrompt(prompt_token_ids=ids), sp)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(jobs), desc=f"vllm {self.mode}", unit="req")
        outs, walls, seen, stalled = {}, [], 0, 0
        mirror = sched is None and self.mode == "eb"    # multiprocess: keep the caller's policy learning
        while eng.has_unfinished_requests():
            t, c = time.perf_counter(), time.process_time()
            step_outs = eng.step()
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if sched is not None:
                n = len(sched.pdlib_steps) - seen
                seen += n
                walls.extend([(dt, dc)] + [(float("nan"), float("nan"))] * (n - 1) if n else [])
                stalled = stalled + 1 if n and sched.pdlib_steps[-1]["prefill_tokens"] + \
                    sched.pdlib_steps[-1]["decode_tokens"] == 0 else 0
                if stalled >= 100:
                    raise RuntimeError(f"vLLM scheduled no token in 100 steps in a row (run {run_id}): a request "
                                       "cannot fit in the KV cache; raise kv_cache_memory_bytes")
            done = [o for o in step_outs if o.finished]
            for o in done:
                outs[o.request_id] = o
            if mirror and done:
                for o in done:
                    policy.observe_completion(len(o.outputs[0].token_ids))
            if bar is not None and done:
                bar.update(len(done))
        if bar is not None:
            bar.close()
        if sched is not None:
            steps = list(sched.pdlib_steps)
            for row, (w, c) in zip(steps, walls):
                row["wall_s"], row["cpu_s"] = w, c
        else:
            steps = read_telemetry(self._built.telemetry_path, run_id)
        details = self._built.details.take() if self._built.details is not None else []
        return steps, outs, details

    def _result(self, workload, policy, run_id, jobs, skipped, steps, outs, details, termination, max_tokens):
        b = self._built
        prefix = f"{run_id}:"
        known = {req.id for req, _, _ in jobs}

        def strip(rid: str) -> str:
            """vLLM's internal id is ``external + '-' + 8 random characters``; give the workload id."""
            rid = rid.removeprefix(prefix)
            return rid if rid in known or len(rid) < 10 or rid[-9] != "-" else rid[:-9]
        in_process = not self.options["multiprocess"]
        log = StepLog()
        admit, finish, per_req = {}, {}, []
        cols = {key: [] for key in ("prefill_tokens", "decode_tokens", "num_prefill_reqs", "num_decode_reqs",
                                    "kv_computed_tokens", "kv_block_tokens", "blocks_used", "kv_usage", "core_s", "wall_s", "cpu_s",
                                    "refill", "preempted", "num_waiting")}
        empty = [r for r in steps if r["prefill_tokens"] + r["decode_tokens"] == 0]
        steps = [r for r in steps if r["prefill_tokens"] + r["decode_tokens"] > 0]
        for i, r in enumerate(steps):
            admitted = [strip(x) for x in r["admitted"]]
            finished = [strip(x) for x in r["finished"]]
            for x in admitted:
                admit.setdefault(x, i)
            for x in finished:
                finish[x] = i
            dur = r.get(self.step_timer, float("nan")) if in_process else r["core_s"]
            log.append(StepRecord(
                step=i, phase="prefill" if r["prefill_tokens"] > 0 else "decode",
                batch_size=r["num_prefill_reqs"] + r["num_decode_reqs"],
                tokens=r["prefill_tokens"] + r["decode_tokens"], kv_tokens=r["kv_tokens"],
                kv_bytes=r["kv_tokens"] * b.kv_bytes_per_token if b.kv_bytes_per_token else None,
                duration_s=float(dur), k=int(r["k"]), finished=finished, admitted=admitted))
            for key in cols:
                v = r.get(key)
                cols[key].append([strip(x) for x in v] if key == "preempted" else v)
            if self.record_per_request_kv:
                per_req.append({strip(x): n for x, n in r["kv_tokens_per_request"].items()})
        requests = []
        for req, ids, n_out in jobs:
            o = outs.get(f"{run_id}:{req.id}")
            comp = o.outputs[0] if o is not None else None
            n = len(comp.token_ids) if comp is not None else 0
            d = request_row(req.id, len(ids), n, req.output_len, admit.get(req.id), finish.get(req.id),
                            termination == "model" and comp is not None and comp.finish_reason == "length",
                            finish_reason=comp.finish_reason if comp is not None else None)
            if self.keep_output_ids and comp is not None:
                d["output_ids"] = list(comp.token_ids)
            requests.append(d)
        meta = {
            "engine": "vllm", "mode": self.mode, "model": self.model, "run_id": run_id,
            "workload": workload.name, "num_requests": len(jobs), "skipped": skipped,
            "termination": termination, "max_tokens": max_tokens, "policy": policy.describe(),
            "timing": (f"{TIMERS[self.step_timer]} around each in-process LLMEngine.step() (one schedule + "
                       "one forward + output processing)") if in_process else
                      ("scheduler-side interval schedule() start -> update_from_output() start "
                       "(schedule + forward + sampling), multiprocess mode"),
            "vllm": b.describe(),
            "empty_steps": len(empty),    # iterations that scheduled nothing (e.g. the flush after the last finish)
            "step_details": dict(cols, **({"kv_tokens_per_request": per_req} if self.record_per_request_kv else {})),
            "vllm_iteration_details": details,
            "policy_differences": POLICY_DIFFERENCES,
        }
        if hasattr(policy, "history"):
            meta["policy_history"] = [list(h) for h in policy.history]
        return RunResult(log, requests, meta)

    def describe(self) -> dict:
        return {"engine": "vllm", "mode": self.mode, "model": self.model,
                "vllm": self._built.describe() if self._built is not None else None}

    # ------------------------------------------------------------------ profile
    def profile(self, grid: ProfileGrid | None = None, *, prefill_requests: int = 1, warmup: bool = True,
                progress: bool = False, **kwargs) -> ProfileResult:
        """Prefill and decode step times through vLLM -> ``theory.fit_timing`` (a ``ProfileGrid`` or
        its fields, as the native engine); see ``pdlib.engines.vllm.profiling.profile``."""
        from .profiling import profile
        g, rest = ProfileGrid.resolve(grid, DEFAULT_GRID, kwargs)
        if rest:
            raise TypeError(f"profile() got unexpected keyword arguments {sorted(rest)}")
        return profile(self, g, prefill_requests=prefill_requests, warmup=warmup)
