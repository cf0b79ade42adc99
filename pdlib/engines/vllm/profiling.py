"""Profiling through vLLM: prefill-only and decode-only step times -> alpha/beta fits.

Same API and result as the native runner's profiler (``ProfileResult`` with
``theory.fit_timing``); the steps are run through ``VLLMEngine``'s own driver, so they are
timed the same way as runs (``step_timer`` in-process, the scheduler's interval in
multiprocess mode).
"""
from __future__ import annotations

import uuid

from ...policy import FixedK
from ...records import ProfileResult
from ...workload import Request, Workload
from ..base import ProfileGrid, cap_tokens, with_context_range


def profile(engine, grid: ProfileGrid, *, prefill_requests: int = 1, warmup: bool = True) -> ProfileResult:
    """Prefill and decode step times through vLLM -> ``theory.fit_timing`` (same API as the
    native runner's ``profile``).

    Prefill: ``prefill_requests`` requests sharing T prompt tokens (``max_tokens=1``) in one
    prefill step, ``grid.repeats`` times per T in ``grid.prefill_tokens``. Decode: for ``j`` in
    ``grid.decode_batches`` and ``c`` in ``grid.context_lens``, ``j`` requests with ``c``-token prompts
    prefilled together, then ``repeats`` decode steps of batch ``j`` (the context grows by
    one token per step). Points that cannot fit (``max_model_len``, KV blocks) are skipped
    and listed in ``meta["skipped"]``; prefill sizes beyond ``max_model_len`` x prompts or
    ``max_num_batched_tokens`` are capped to it (``meta["capped"]``). The exclusive-batching scheduler keeps prefill and
    decode apart; in ``mode="mb"`` any mixed step is left out.
    """
    prefill_tokens, decode_batches, context_lens = (list(v) for v in (grid.prefill_tokens, grid.decode_batches,
                                                                       grid.context_lens))
    repeats, m = grid.repeats, int(prefill_requests)
    if repeats < 1 or m < 1:
        raise ValueError(f"repeats and prefill_requests must be >= 1, got {repeats!r}, {prefill_requests!r}")
    eng = engine._ensure(max(decode_batches + [m]))
    b = engine._built
    dur = (lambda r: r[engine.step_timer]) if not engine.options["multiprocess"] else (lambda r: r["core_s"])

    def blocks(tokens: int) -> int:
        return -(-tokens // b.block_size)

    def one(lengths, n_out):
        pol = FixedK(len(lengths), len(lengths))
        reqs = [Request(f"prof{i}", L, n_out) for i, L in enumerate(lengths)]
        engine._prompt_seed += 1      # fresh prompts every time: no prefix-cache hit can shorten a prefill
        jobs = [(r, Workload.prompt_ids_for(r, b.vocab_size, seed=engine._prompt_seed), n_out) for r in reqs]
        steps, _, _ = engine._drive(eng, uuid.uuid4().hex[:12], pol, jobs, "dataset", False)
        return steps

    if warmup:
        one([min(prefill_tokens + [64])] * max(1, min(max(decode_batches + [1]), 4)), 4)
    pre, dec, skipped = [], [], []
    sc = getattr(getattr(eng, "vllm_config", None), "scheduler_config", None)
    budget = int(getattr(sc, "max_num_batched_tokens", 0) or 0) or None
    limit = min([(b.max_model_len - 1) * m] + ([budget] if budget else []))
    prefill_tokens, capped = cap_tokens(prefill_tokens, limit, f"max_model_len {b.max_model_len} x {m} prompt(s)"
                                        + (f" / max_num_batched_tokens {budget}" if budget else ""))
    for T in prefill_tokens:
        lengths = [T // m + (1 if i < T % m else 0) for i in range(m)]
        if min(lengths) < 1 or max(lengths) + 1 > b.max_model_len or \
                (b.num_blocks and sum(blocks(L + 1) for L in lengths) > b.num_blocks):
            skipped.append(f"prefill {T} tokens in {m} requests: exceeds max_model_len {b.max_model_len} "
                           f"or the KV cache ({b.num_blocks} blocks of {b.block_size})")
            continue
        for _ in range(repeats):
            for r in one(lengths, 1):
                if r["prefill_tokens"] and not r["decode_tokens"]:
                    pre.append({"tokens": r["prefill_tokens"], "num_requests": r["num_prefill_reqs"],
                                "seconds": dur(r)})
    for c in context_lens:
        for j in decode_batches:
            if c + repeats + 1 > b.max_model_len or (b.num_blocks and j * blocks(c + repeats + 1) > b.num_blocks):
                skipped.append(f"decode batch {j} x context {c}: {j * (c + repeats + 1)} tokens exceed "
                               f"max_model_len {b.max_model_len} or the KV cache")
                continue
            for r in one([c] * j, repeats + 1):
                if r["decode_tokens"] and not r["prefill_tokens"] and r["num_decode_reqs"] == j:
                    dec.append({"batch": j, "context_len": c, "seconds": dur(r)})
    meta = {"engine": "vllm", "mode": engine.mode, "model": engine.model, "repeats": repeats,
            "prefill_requests": m, "skipped": skipped, "capped": capped,
            "timing": f"{engine.TIMERS[engine.step_timer]} per in-process step" if not engine.options["multiprocess"]
            else "scheduler-side interval per step (multiprocess)", "vllm": b.describe()}
    return with_context_range(ProfileResult.from_samples(pre, dec, meta))
