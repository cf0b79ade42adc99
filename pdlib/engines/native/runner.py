"""``NativeEngine``: a transformers causal LM driven step by step by ``policy.ExclusiveBatching``.

Each step is exactly what the policy says: a prefill-only step that packs the admitted
prompts into one varlen sequence (no padding), or a decode step over every active request;
finished requests free their KV pages in the same step. Greedy sampling.

KV accounting (``StepRecord.kv_tokens``): after a step every active request holds
``input_len + generated`` tokens — its prompt and generated tokens' K/V, where the newest
generated token's slot is reserved (its K/V is written by the next decode step). A request
that finishes frees everything at once.

Capacity: a request whose whole length (input + reference output under ``dataset``
termination, input + max_tokens under ``model``) exceeds the KV capacity or max_model_len is
refused before the run starts; an admission whose prompts do not fit in the free pages, or a
decode step that needs a page when none is free, stops the run with ``KVCapacityError``
naming the step and the numbers (the engine never preempts: that is the OOM event of the
theory). Timing: CUDA events around each step's device work, read once at the end of the
run (model termination reads the new tokens each step to test EOS; dataset termination
never synchronises); ``time.perf_counter`` on CPU. ``meta["wall_s"]`` is the run's wall time.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ... import theory
from ...policy import ExclusiveBatching
from ...records import RunResult, StepLog, StepRecord
from ...workload import Workload
from .attention import AttnContext, set_context
from .config import NativeConfig
from .graphs import DecodeGraphs
from .kv_cache import KVCache, KVCapacityError
from .memory import memory_report
from .model import load_model

CPU_DEFAULT_CAPACITY = 131072          # tokens (covers seed 004's 32 x 2048 grid) ...
CPU_DEFAULT_BYTES = 2 << 30             # ... but never more than 2 GiB of host memory


class StepTimer:
    """CUDA events per step read at the end (no per-step sync), perf_counter on CPU."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.marks = []

    def start(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def stop(self, start) -> None:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append((start, e))
        else:
            self.marks.append(time.perf_counter() - start)

    def collect(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            out = [s.elapsed_time(e) / 1e3 for s, e in self.marks]
        else:
            out = list(self.marks)
        self.marks = []
        return out


class NativeEngine:
    name = "native"

    def __init__(self, model, weights: str = "pretrained", dtype: str = "bf16", device: str = "cuda",
                 kv_capacity_tokens: int | None = None, kv_memory_bytes: int | None = None, seed: int = 0,
                 cuda_graphs: bool = True, **options):
        cfg = self.cfg = NativeConfig(model=model, weights=weights, dtype=dtype, device=device,
                                      kv_capacity_tokens=kv_capacity_tokens, kv_memory_bytes=kv_memory_bytes,
                                      seed=seed, cuda_graphs=cuda_graphs, **options)
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} requested but CUDA is not available (use device='cpu')")
        self.model, self.hf_config = load_model(cfg.model, weights=cfg.weights, dtype=cfg.dtype,
                                                device=self.device, seed=cfg.seed)
        self.decoder = self.model.get_decoder()
        self.lm_head = self.model.get_output_embeddings()
        self.backend = self._backend()
        page = cfg.page_size or (256 if self.backend == "flash_attn" else 16)
        c = self.hf_config
        heads = c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        bpt = theory.kv_bytes_per_token(c, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[cfg.dtype])
        capacity = cfg.kv_capacity_tokens
        if capacity is None:
            if cfg.kv_memory_bytes is not None:
                budget = cfg.kv_memory_bytes
            elif self.device.type == "cuda":
                budget = int(0.6 * torch.cuda.mem_get_info(self.device)[0])
            else:
                budget = min(CPU_DEFAULT_CAPACITY * bpt, CPU_DEFAULT_BYTES)
            capacity = KVCache.tokens_for_bytes(budget, bpt, page)
            if capacity < page:
                raise KVCapacityError(f"KV memory budget of {budget} bytes holds less than one page "
                                      f"({page} tokens x {bpt} bytes per token)")
        self.cache = KVCache(num_layers=c.num_hidden_layers, kv_heads=kv_heads, head_dim=head_dim,
                             dtype=self.model.dtype, device=self.device, capacity_tokens=capacity, page_size=page)
        max_pos = getattr(c, "max_position_embeddings", None) or self.cache.capacity_tokens
        self.max_model_len = min(cfg.max_model_len or max_pos, self.cache.capacity_tokens)
        self.max_pages = self.cache.pages_needed(self.max_model_len)
        eos = getattr(c, "eos_token_id", None)
        gen = getattr(self.model, "generation_config", None)
        eos = eos if eos is not None else getattr(gen, "eos_token_id", None)
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        self.graphs = None
        if cfg.cuda_graphs and self.device.type == "cuda":
            flash = self.backend == "flash_attn"
            self.graphs = DecodeGraphs(self._forward_decode, max_batch=cfg.max_batch, max_pages=self.max_pages,
                                       scratch_page=self.cache.scratch_page, page_size=page, device=self.device,
                                       page_buckets=not flash)
            if flash:
                self.graphs.capture_all()

    def _backend(self) -> str:
        want = self.cfg.attn_backend
        if want == "torch" or (want == "auto" and self.device.type != "cuda"):
            return "torch"
        try:
            import flash_attn  # noqa: F401
            return "flash_attn"
        except ImportError:
            if want == "flash_attn":
                raise ImportError("attn_backend='flash_attn' needs the flash-attn package") from None
            return "torch"

    def _to_dev(self, a: np.ndarray, dtype=torch.long):
        t = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    # ------------------------------------------------------------------ one step each
    @torch.inference_mode()
    def _prefill(self, rids, prompts) -> torch.Tensor:
        """One packed prefill of the given prompts (KV pages already allocated); next token per prompt."""
        lens = [len(p) for p in prompts]
        ids = self._to_dev(np.concatenate([np.asarray(p, dtype=np.int64) for p in prompts]))
        pos = self._to_dev(np.concatenate([np.arange(n) for n in lens]))
        slots = self._to_dev(np.concatenate([self.cache.slots(r, 0, n) for r, n in zip(rids, lens)]))
        cu = np.concatenate([[0], np.cumsum(lens)])
        set_context(AttnContext(self.cache, True, slots, self.backend, seq_lens=lens,
                                cu_seqlens=self._to_dev(cu, torch.int32), max_seqlen=max(lens)))
        h = self.decoder(input_ids=ids[None], position_ids=pos[None], use_cache=False).last_hidden_state[0]
        set_context(None)
        last = self._to_dev(cu[1:] - 1)
        return self.lm_head(h[last]).argmax(-1)

    def _forward_decode(self, input_ids, positions, slot_mapping, block_table, context_lens):
        set_context(AttnContext(self.cache, False, slot_mapping, self.backend, block_table=block_table,
                                context_lens=context_lens))
        h = self.decoder(input_ids=input_ids[:, None], position_ids=positions[:, None],
                         use_cache=False).last_hidden_state[:, -1]
        set_context(None)
        return self.lm_head(h).argmax(-1)

    @torch.inference_mode()
    def _decode(self, rids, input_ids: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
        """One decode step: row i feeds ``input_ids[i]`` at ``positions[i]`` (its reserved slot)."""
        slots = np.concatenate([self.cache.slots(r, p, p + 1) for r, p in zip(rids, positions)])
        bt = self.cache.block_table(rids)
        B = len(rids)
        if self.graphs is not None and self.graphs.bucket(B) is not None and bt.shape[1] <= self.max_pages:
            return self.graphs.run(B, input_ids, positions, slots, bt, positions + 1)
        return self._forward_decode(input_ids, self._to_dev(positions), self._to_dev(slots),
                                    self._to_dev(bt, torch.int32), self._to_dev(positions + 1, torch.int32))

    # ------------------------------------------------------------------ run
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

    def run(self, workload: Workload, policy, *, termination: str = "dataset", max_tokens: int | None = None,
            progress: bool = False, keep_output_ids: bool = True) -> RunResult:
        targets = self._targets(workload, termination, max_tokens)
        sched = policy if isinstance(policy, ExclusiveBatching) else ExclusiveBatching(policy)
        reqs = workload.requests
        vocab = self.hf_config.vocab_size
        self.cache.reset()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        last_tok = torch.zeros(len(reqs), dtype=torch.long, device=self.device)
        gen = [0] * len(reqs)                 # tokens generated so far
        admit, finish, truncated = [None] * len(reqs), [None] * len(reqs), [False] * len(reqs)
        emitted = []                          # (request indices, device tokens) per step
        waiting, active = list(range(len(reqs)))[::-1], []
        timer, rows = StepTimer(self.device), []
        bar = _progress(len(reqs), progress)
        t_wall = time.perf_counter()
        step = 0
        while True:
            action, n = sched.next_action(len(active), len(waiting))
            if action == "done":
                break
            k_now = int(sched.k)
            if action == "prefill":
                batch = [waiting.pop() for _ in range(n)]
                need = sum(self.cache.pages_needed(reqs[i].input_len + 1) for i in batch)
                if need > self.cache.num_pages - self.cache.pages_held:
                    raise KVCapacityError(
                        f"step {step}: admitting {n} requests needs {need} KV pages "
                        f"({sum(reqs[i].input_len + 1 for i in batch)} tokens) but "
                        f"{self.cache.num_pages - self.cache.pages_held} pages are free; "
                        f"{self.cache.tokens_held} of {self.cache.capacity_tokens} tokens held by {len(active)} requests")
                prompts = [Workload.prompt_ids_for(reqs[i], vocab, self.cfg.seed) for i in batch]
                for i in batch:
                    self.cache.allocate(i, reqs[i].input_len + 1)
                    admit[i] = step
                t0 = timer.start()
                nxt = self._prefill(batch, prompts)
                timer.stop(t0)
                rows_i, tokens = batch, sum(reqs[i].input_len for i in batch)
                active.extend(batch)
            else:
                rows_i = list(active)
                positions = np.array([reqs[i].input_len + gen[i] - 1 for i in rows_i], dtype=np.int64)
                idx = self._to_dev(np.asarray(rows_i))
                t0 = timer.start()
                nxt = self._decode(rows_i, last_tok[idx], positions)
                timer.stop(t0)
                tokens = len(rows_i)
            if action == "prefill":
                idx = self._to_dev(np.asarray(rows_i))
            last_tok[idx] = nxt
            if keep_output_ids:
                emitted.append((rows_i, nxt))
            host = nxt.tolist() if termination == "model" else None
            done = []
            for j, i in enumerate(rows_i):
                gen[i] += 1
                if termination == "dataset":
                    stop = gen[i] >= targets[i]
                else:
                    stop = host[j] in self.eos_ids
                    if not stop and gen[i] >= targets[i]:
                        stop = truncated[i] = True
                if stop:
                    done.append(i)
            for i in done:
                self.cache.free(i)
                finish[i] = step
            active = [i for i in active if finish[i] is None]
            if action == "decode":              # reserve the slot of each new token
                try:
                    for i in active:
                        self.cache.grow(i, 1)
                except KVCapacityError as e:
                    raise KVCapacityError(f"step {step} (decode, batch {len(rows_i)}): {e}") from None
            sched.on_finished([gen[i] for i in done])
            rows.append(StepRecord(step=step, phase=action, batch_size=len(rows_i), tokens=tokens,
                                   kv_tokens=self.cache.tokens_held, duration_s=0.0, k=k_now,
                                   kv_bytes=self.cache.bytes_held, finished=[reqs[i].id for i in done],
                                   admitted=[reqs[i].id for i in rows_i] if action == "prefill" else []))
            if bar is not None and done:
                bar.update(len(done))
            step += 1
        durations = timer.collect()
        wall = time.perf_counter() - t_wall
        if bar is not None:
            bar.close()
        log = StepLog()
        for rec, d in zip(rows, durations):
            rec.duration_s = d
            log.append(rec)
        outs = self._collect_outputs(emitted, len(reqs)) if keep_output_ids else None
        requests = [dict(id=r.id, input_len=r.input_len, output_len=gen[i], ref_output_len=r.output_len,
                         admit_step=admit[i], finish_step=finish[i], truncated=truncated[i],
                         **({"output_ids": outs[i]} if outs is not None else {}))
                    for i, r in enumerate(reqs)]
        meta = dict(self.describe(), workload=workload.name, termination=termination, max_tokens=max_tokens,
                    policy=sched.policy.describe(), wall_s=wall, num_steps=step,
                    num_truncated=sum(truncated), memory=self.memory())
        return RunResult(log, requests, meta)

    @staticmethod
    def _collect_outputs(emitted, n):
        outs = [[] for _ in range(n)]
        if not emitted:
            return outs
        flat = torch.cat([t.reshape(-1) for _, t in emitted]).tolist()
        pos = 0
        for rows_i, _ in emitted:
            for i in rows_i:
                outs[i].append(flat[pos])
                pos += 1
        return outs

    # ------------------------------------------------------------------ info
    def describe(self) -> dict:
        c = self.cfg
        return {"engine": "native", "model": c.model if isinstance(c.model, str) else self.hf_config.model_type,
                "model_type": self.hf_config.model_type, "weights": c.weights, "dtype": c.dtype,
                "device": str(self.device), "attn_backend": self.backend, "cuda_graphs": self.graphs is not None,
                "kv_capacity_tokens": self.cache.capacity_tokens, "page_size": self.cache.page_size,
                "kv_bytes_per_token": self.cache.bytes_per_token, "max_model_len": self.max_model_len,
                "seed": c.seed}

    def memory(self) -> dict:
        return memory_report(self.model, self.cache, self.device)

    def profile(self, prefill_tokens=(128, 256, 512, 1024, 2048), decode_batches=(1, 2, 4, 8, 16, 32, 64),
                context_lens=(128, 512), repeats: int = 3, **kw):
        from .profiling import profile
        return profile(self, prefill_tokens=prefill_tokens, decode_batches=decode_batches,
                       context_lens=context_lens, repeats=repeats, **kw)

    def latency_grid(self, batches=(1, 2, 4, 8, 16, 32), seq_lens=(128, 256, 512, 1024, 2048), trials: int = 3,
                     csv_path=None):
        from .profiling import latency_grid
        return latency_grid(self, batches=batches, seq_lens=seq_lens, trials=trials, csv_path=csv_path)


def _progress(total, on):
    if not on:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="requests", unit="req")
