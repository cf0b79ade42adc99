"""Timing profiles of the native engine: prefill over token counts, decode over batch x
context length (fits of alpha_p, beta_p, alpha_d, beta_d through ``theory.fit_timing`` via
``records.ProfileResult``), and seed 004's latency calibration grid with its ``T(b, L)`` fit.
Everything here drives a ``model_runner.ModelRunner`` through its public ``prefill``/``decode``.

Decode samples hold B synthetic requests of C context tokens each in the real KV cache (their
K/V content does not change the step's cost) and time one decode step per repeat; every
configuration is warmed up once. Decode combinations that do not fit in the KV capacity are
skipped and listed in ``meta["skipped"]`` with the reason; prefill sizes beyond max_model_len or
the KV capacity are capped there and listed in ``meta["capped"]``. The fit records the ranges it
was made on (prefill tokens, decode batch, context length: ``theory.TimingModel``).
"""
from __future__ import annotations

import csv
import io

import numpy as np
import torch

from ... import theory
from ...records import ProfileResult, atomic_write_text
from ..base import ProfileGrid, cap_tokens, with_context_range
from .model_runner import ModelRunner
from .timing import StepTimer


def _prompts(runner: ModelRunner, total: int, n: int, seed: int):
    rng = np.random.default_rng([seed, total, n])
    sizes = [total // n + (1 if i < total % n else 0) for i in range(n)]
    return [rng.integers(1, runner.hf_config.vocab_size - 1, size=s).tolist() for s in sizes]


def time_prefill(runner: ModelRunner, total_tokens: int, num_requests: int = 1, repeats: int = 3) -> list[float]:
    cache = runner.cache
    prompts = _prompts(runner, total_tokens, num_requests, runner.cfg.seed)
    rids = [("p", i) for i in range(num_requests)]
    timer = StepTimer(runner.device)
    for r in range(repeats + 1):
        cache.reset()
        for rid, p in zip(rids, prompts):
            cache.allocate(rid, len(p))
        t0 = timer.start()
        runner.prefill(rids, prompts)
        timer.stop(t0)
    cache.reset()
    return timer.collect()[1:]


def time_decode(runner: ModelRunner, batch: int, context_len: int, repeats: int = 3, clock: str = "wall"
                ) -> list[float]:
    cache = runner.cache
    rids = [("d", i) for i in range(batch)]
    cache.reset()
    for rid in rids:
        cache.allocate(rid, context_len + 1)
    ids = torch.randint(1, runner.hf_config.vocab_size - 1, (batch,), device=runner.device,
                        generator=torch.Generator(runner.device).manual_seed(runner.cfg.seed))
    pos = np.full(batch, context_len, dtype=np.int64)
    timer = StepTimer(runner.device, clock)
    for r in range(repeats + 1):
        t0 = timer.start()
        runner.decode(rids, ids, pos)
        timer.stop(t0)
    cache.reset()
    return timer.collect()[1:]


def profile_runner(runner: ModelRunner, grid: ProfileGrid, *, prefill_requests: int = 1, meta: dict | None = None
            ) -> ProfileResult:
    prefill, decode, skipped = [], [], []
    cache, cap, repeats = runner.cache, runner.cache.capacity_tokens, grid.repeats
    limit = min((runner.max_model_len - 1) * prefill_requests,
                (cache.num_pages - prefill_requests) * cache.page_size)   # one spare page per prompt
    tokens, capped = cap_tokens(grid.prefill_tokens, limit,
                                f"max_model_len {runner.max_model_len} x {prefill_requests} prompt(s) / KV capacity {cap}")
    for T in tokens:
        for s in time_prefill(runner, T, prefill_requests, repeats):
            prefill.append({"tokens": T, "num_requests": prefill_requests, "seconds": s})
    for B in grid.decode_batches:
        for C in grid.context_lens:
            if not runner.fits(C + 1, B):
                skipped.append(f"decode batch {B} x context {C}: {B * (C + 1)} tokens exceed KV capacity {cap}")
                continue
            for s in time_decode(runner, B, C, repeats):
                decode.append({"batch": B, "context_len": C, "seconds": s})
    meta = dict(meta or {}, repeats=repeats, prefill_requests=prefill_requests, skipped=skipped, capped=capped)
    return with_context_range(ProfileResult.from_samples(prefill, decode, meta))



CSV_FIELDS = ("batch_size", "max_seq_len", "mean_latency", "std_latency")


def latency_grid(runner: ModelRunner, *, batches=(1, 2, 4, 8, 16, 32), seq_lens=(128, 256, 512, 1024, 2048), trials: int = 3,
                 csv_path=None):
    """Seed 004's calibration: decode-step latency (s) at batch b with every request holding
    ``max_seq_len`` tokens, ``trials`` trials each -> rows ``batch_size, max_seq_len,
    mean_latency, std_latency`` (CSV written atomically when ``csv_path``) and
    ``theory.fit_T_latency`` over the per-trial samples. Returns ``(rows, fit, skipped)``."""
    rows, b_all, L_all, T_all, skipped = [], [], [], [], []
    for b in batches:
        for L in seq_lens:
            if not runner.fits(L + 1, b):
                skipped.append(f"batch {b} x seq len {L}: exceeds KV capacity {runner.cache.capacity_tokens}")
                continue
            s = np.array(time_decode(runner, int(b), int(L), trials))
            rows.append({"batch_size": int(b), "max_seq_len": int(L), "mean_latency": float(s.mean()),
                         "std_latency": float(s.std(ddof=1)) if s.size > 1 else 0.0})
            b_all += [b] * s.size
            L_all += [L] * s.size
            T_all += s.tolist()
    if csv_path is not None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(csv_path, buf.getvalue())
    fit = theory.fit_T_latency(b_all, L_all, T_all)
    return rows, fit, skipped
