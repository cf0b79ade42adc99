"""Timing profiles of the native engine: prefill over token counts, decode over batch x
context length (fits of alpha_p, beta_p, alpha_d, beta_d through ``theory.fit_timing`` via
``records.ProfileResult``), and seed 004's latency calibration grid with its ``T(b, L)`` fit.

Decode samples hold B synthetic requests of C context tokens each in the real KV cache (their
K/V content does not change the step's cost) and time one decode step per repeat; every
configuration is warmed up once. Combinations that do not fit in the KV capacity are skipped
and listed in ``meta["skipped"]`` with the reason.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import torch

from ... import theory
from ...records import ProfileResult, atomic_write_text
from .runner import StepTimer


def _prompts(engine, total: int, n: int, seed: int):
    rng = np.random.default_rng([seed, total, n])
    sizes = [total // n + (1 if i < total % n else 0) for i in range(n)]
    return [rng.integers(1, engine.hf_config.vocab_size - 1, size=s).tolist() for s in sizes]


def time_prefill(engine, total_tokens: int, num_requests: int = 1, repeats: int = 3) -> list[float]:
    cache = engine.cache
    prompts = _prompts(engine, total_tokens, num_requests, engine.cfg.seed)
    rids = [("p", i) for i in range(num_requests)]
    timer = StepTimer(engine.device)
    for r in range(repeats + 1):
        cache.reset()
        for rid, p in zip(rids, prompts):
            cache.allocate(rid, len(p))
        t0 = timer.start()
        engine._prefill(rids, prompts)
        timer.stop(t0)
    cache.reset()
    return timer.collect()[1:]


def time_decode(engine, batch: int, context_len: int, repeats: int = 3) -> list[float]:
    cache = engine.cache
    rids = [("d", i) for i in range(batch)]
    cache.reset()
    for rid in rids:
        cache.allocate(rid, context_len + 1)
    ids = torch.randint(1, engine.hf_config.vocab_size - 1, (batch,), device=engine.device,
                        generator=torch.Generator(engine.device).manual_seed(engine.cfg.seed))
    pos = np.full(batch, context_len, dtype=np.int64)
    timer = StepTimer(engine.device)
    for r in range(repeats + 1):
        t0 = timer.start()
        engine._decode(rids, ids, pos)
        timer.stop(t0)
    cache.reset()
    return timer.collect()[1:]


def _fits(engine, tokens: int) -> bool:
    return engine.cache.pages_needed(tokens) <= engine.cache.num_pages


def profile(engine, *, prefill_tokens, decode_batches, context_lens, repeats: int = 3,
            prefill_requests: int = 1) -> ProfileResult:
    prefill, decode, skipped = [], [], []
    cap = engine.cache.capacity_tokens
    for T in prefill_tokens:
        T = int(T)
        if T > engine.max_model_len * prefill_requests or not _fits(engine, T + engine.cache.page_size * prefill_requests):
            skipped.append(f"prefill {T} tokens: exceeds KV capacity {cap} / max_model_len {engine.max_model_len}")
            continue
        for s in time_prefill(engine, T, prefill_requests, repeats):
            prefill.append({"tokens": T, "num_requests": prefill_requests, "seconds": s})
    for B in decode_batches:
        for C in context_lens:
            B, C = int(B), int(C)
            if C + 1 > engine.max_model_len or engine.cache.pages_needed(C + 1) * B > engine.cache.num_pages:
                skipped.append(f"decode batch {B} x context {C}: {B * (C + 1)} tokens exceed KV capacity {cap}")
                continue
            for s in time_decode(engine, B, C, repeats):
                decode.append({"batch": B, "context_len": C, "seconds": s})
    meta = dict(engine.describe(), repeats=repeats, prefill_requests=prefill_requests, skipped=skipped)
    return ProfileResult.from_samples(prefill, decode, meta)


CSV_FIELDS = ("batch_size", "max_seq_len", "mean_latency", "std_latency")


def latency_grid(engine, *, batches=(1, 2, 4, 8, 16, 32), seq_lens=(128, 256, 512, 1024, 2048), trials: int = 3,
                 csv_path=None):
    """Seed 004's calibration: decode-step latency (s) at batch b with every request holding
    ``max_seq_len`` tokens, ``trials`` trials each -> rows ``batch_size, max_seq_len,
    mean_latency, std_latency`` (CSV written atomically when ``csv_path``) and
    ``theory.fit_T_latency`` over the per-trial samples. Returns ``(rows, fit, skipped)``."""
    rows, b_all, L_all, T_all, skipped = [], [], [], [], []
    for b in batches:
        for L in seq_lens:
            if L + 1 > engine.max_model_len or engine.cache.pages_needed(L + 1) * b > engine.cache.num_pages:
                skipped.append(f"batch {b} x seq len {L}: exceeds KV capacity {engine.cache.capacity_tokens}")
                continue
            s = np.array(time_decode(engine, int(b), int(L), trials))
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
