"""``NativeEngine``: a transformers causal LM driven step by step by ``policy.ExclusiveBatching``
through ``pdlib.steploop`` (the loop the literal simulator runs too).

Each step is exactly what the policy says: a prefill-only step that packs the admitted
prompts into one varlen sequence (no padding), or a decode step over every active request;
finished requests free their KV pages in the same step. Greedy sampling.

KV accounting (``StepRecord.kv_tokens``): after a step every active request holds
``input_len + generated`` tokens -- its prompt and generated tokens' K/V, where the newest
generated token's slot is reserved (its K/V is written by the next decode step). A request
that finishes frees everything at once.

Capacity: a request whose whole length (input + reference output under ``dataset``
termination, input + max_tokens under ``model``) exceeds the KV capacity or max_model_len is
refused before the run starts; an admission whose prompts do not fit in the free pages, or a
decode step that needs a page when none is free, stops the run with ``KVCapacityError``
naming the step and the numbers (the engine never preempts: that is the OOM event of the
theory). Timing: ``timing.StepTimer`` around each step's device work, read once at the end of
the run (model termination reads the new tokens each step to test EOS; dataset termination
never synchronises). ``meta["wall_s"]`` is the run's wall time.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ...policy import ExclusiveBatching
from ...records import RunResult, request_row
from ...steploop import run_steps
from ...workload import Workload
from ..base import ProfileGrid
from .config import NativeConfig
from .kv_cache import KVCapacityError
from .model import eos_token_ids
from .model_runner import ModelRunner
from .profiling import latency_grid as runner_latency_grid
from .profiling import profile_runner
from .timing import StepTimer

DEFAULT_GRID = ProfileGrid()


class NativeEngine:
    name = "native"

    def __init__(self, model, weights: str = "pretrained", dtype: str = "bf16", device: str = "cuda",
                 kv_capacity_tokens: int | None = None, kv_memory_bytes: int | None = None, seed: int = 0,
                 cuda_graphs: bool = True, **options):
        self.cfg = NativeConfig(model=model, weights=weights, dtype=dtype, device=device,
                                kv_capacity_tokens=kv_capacity_tokens, kv_memory_bytes=kv_memory_bytes,
                                seed=seed, cuda_graphs=cuda_graphs, **options)
        self.runner = ModelRunner(self.cfg)
        self.eos_ids = eos_token_ids(self.runner.model)

    # the runner's parts, for callers that inspect the engine
    model = property(lambda self: self.runner.model)
    hf_config = property(lambda self: self.runner.hf_config)
    cache = property(lambda self: self.runner.cache)
    device = property(lambda self: self.runner.device)
    max_model_len = property(lambda self: self.runner.max_model_len)

    def run(self, workload: Workload, policy, *, termination: str = "dataset", max_tokens: int | None = None,
            progress: bool = False, keep_output_ids: bool = True) -> RunResult:
        targets = self._targets(workload, termination, max_tokens)
        sched = policy if isinstance(policy, ExclusiveBatching) else ExclusiveBatching(policy)
        reqs = workload.requests
        self.runner.reset()
        steps = _Steps(self.runner, reqs, self.eos_ids if termination == "model" else None, keep_output_ids,
                       self.cfg.seed)
        t0 = time.perf_counter()
        res = run_steps(sched, steps, ids=[r.id for r in reqs], input_lens=[r.input_len for r in reqs],
                        targets=targets, kv_bytes_per_token=self.cache.bytes_per_token, progress=progress)
        wall = time.perf_counter() - t0
        outs = steps.outputs() if keep_output_ids else None
        requests = [request_row(r.id, r.input_len, s.generated, r.output_len, s.admit_step, s.finish_step,
                                s.truncated, **({"output_ids": outs[i]} if outs is not None else {}))
                    for i, (r, s) in enumerate(zip(reqs, res.requests))]
        meta = dict(self.describe(), workload=workload.name, termination=termination, max_tokens=max_tokens,
                    policy=sched.policy.describe(), wall_s=wall, num_steps=res.num_steps,
                    num_truncated=sum(s.truncated for s in res.requests), memory=self.memory())
        return RunResult(res.log, requests, meta)

    def _targets(self, workload: Workload, termination: str, max_tokens):
        if termination not in ("dataset", "model"):
            raise ValueError(f"termination must be 'dataset' or 'model', got {termination!r}")
        targets = []
        for r in workload.requests:
            if r.input_len < 1:
                raise ValueError(f"{workload.name}: request {r.id!r}: input_len must be >= 1, got {r.input_len}")
            if r.prompt_ids is not None and len(r.prompt_ids) != r.input_len:
                raise ValueError(f"{workload.name}: request {r.id!r}: {len(r.prompt_ids)} prompt_ids but "
                                 f"input_len {r.input_len}")
            if termination == "dataset":
                t = max(int(r.output_len), 1)          # a prefill always produces one token
            else:
                t = int(max_tokens) if max_tokens is not None else self.max_model_len - r.input_len
            need = r.input_len + t
            if t < 1 or need > self.max_model_len:
                raise KVCapacityError(
                    f"{workload.name}: request {r.id!r} needs {need} KV tokens (input {r.input_len} + "
                    f"output {t}) but one request may hold at most {self.max_model_len} "
                    f"(KV capacity {self.cache.capacity_tokens} tokens, max_model_len {self.max_model_len})")
            targets.append(t)
        return targets

    # ------------------------------------------------------------------ info
    def describe(self) -> dict:
        c = self.cfg
        return {"engine": "native", "model": c.model if isinstance(c.model, str) else self.hf_config.model_type,
                "model_type": self.hf_config.model_type, "weights": c.weights, "dtype": c.dtype,
                **self.runner.describe(), "seed": c.seed}

    def memory(self) -> dict:
        return self.runner.memory()

    def profile(self, grid: ProfileGrid | None = None, *, prefill_requests: int = 1, **kwargs):
        """Prefill and decode step times -> ``theory.fit_timing`` (``ProfileGrid`` or its fields)."""
        g, rest = ProfileGrid.resolve(grid, DEFAULT_GRID, kwargs)
        if rest:
            raise TypeError(f"profile() got unexpected keyword arguments {sorted(rest)}")
        return profile_runner(self.runner, g, prefill_requests=prefill_requests, meta=self.describe())

    def latency_grid(self, batches=(1, 2, 4, 8, 16, 32), seq_lens=(128, 256, 512, 1024, 2048), trials: int = 3,
                     csv_path=None):
        return runner_latency_grid(self.runner, batches=batches, seq_lens=seq_lens, trials=trials,
                                      csv_path=csv_path)


class _Steps:
    """One run's model side for ``steploop.run_steps``: KV pages per request (keyed by queue
    index), each request's last token on the device, the emitted tokens, the step timer."""

    def __init__(self, runner: ModelRunner, reqs, eos_ids, keep_output_ids: bool, seed: int):
        self.runner, self.cache, self.reqs, self.eos_ids, self.seed = runner, runner.cache, reqs, eos_ids, seed
        self.last_tok = torch.zeros(len(reqs), dtype=torch.long, device=runner.device)
        self.emitted = [] if keep_output_ids else None        # (queue indices, device tokens) per step
        self.timer = StepTimer(runner.device)

    def prefill(self, rows, step):
        cache, reqs = self.cache, self.reqs
        need, free = sum(cache.pages_needed(reqs[i].input_len + 1) for i in rows), cache.num_pages - cache.pages_held
        if need > free:
            raise KVCapacityError(
                f"step {step}: admitting {len(rows)} requests needs {need} KV pages "
                f"({sum(reqs[i].input_len + 1 for i in rows)} tokens) but {free} pages are free; "
                f"{cache.tokens_held} of {cache.capacity_tokens} tokens held by {len(cache.lens)} requests")
        prompts = [Workload.prompt_ids_for(reqs[i], self.runner.hf_config.vocab_size, self.seed) for i in rows]
        for i in rows:
            cache.allocate(i, reqs[i].input_len + 1)
        t0 = self.timer.start()
        nxt = self.runner.prefill(rows, prompts)
        self.timer.stop(t0)
        return self._emitted(rows, nxt, self.runner.to_device(np.asarray(rows)))

    def decode(self, rows, step):
        positions = np.array([self.cache.lens[i] - 1 for i in rows], dtype=np.int64)   # the reserved slots
        idx = self.runner.to_device(np.asarray(rows))
        t0 = self.timer.start()
        nxt = self.runner.decode(rows, self.last_tok[idx], positions)
        self.timer.stop(t0)
        return self._emitted(rows, nxt, idx)

    def _emitted(self, rows, nxt, idx):
        self.last_tok[idx] = nxt
        if self.emitted is not None:
            self.emitted.append((rows, nxt))
        return None if self.eos_ids is None else [t in self.eos_ids for t in nxt.tolist()]

    def release(self, finished, active, phase, step):
        for i in finished:
            self.cache.free(i)
        if phase == "decode":                   # reserve the slot of each new token
            try:
                for i in active:
                    self.cache.grow(i, 1)
            except KVCapacityError as e:
                raise KVCapacityError(f"step {step} (decode, batch {len(finished) + len(active)}): {e}") from None

    def durations(self):
        return self.timer.collect()

    def outputs(self) -> list[list[int]]:
        outs = [[] for _ in self.reqs]
        if not self.emitted:
            return outs
        flat = torch.cat([t.reshape(-1) for _, t in self.emitted]).tolist()
        pos = 0
        for rows, _ in self.emitted:
            for i in rows:
                outs[i].append(flat[pos])
                pos += 1
        return outs
