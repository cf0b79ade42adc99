"""The exclusive-batching simulator: pdlib's digital twin of a real engine.

It executes ``policy.ExclusiveBatching`` -- the same object, the same decisions --
that the native and vLLM runners execute, with step durations from a fitted
``theory.TimingModel`` instead of a GPU.

Counting convention (shared by every engine; vLLM's):

* A request has input length ``I`` and output length ``L`` (its reference length under
  ``dataset`` termination, capped by ``max_tokens``).
* A **prefill** step admitting ``n`` requests processes their prompts
  (``tokens = sum I``) and emits each request's output token 1; a request with
  ``L == 1`` therefore finishes *in its prefill*.
* A **decode** step with batch ``j`` emits one token per active request
  (``tokens = j``); requests that reach ``L`` tokens finish in that step. A request
  needs its prefill plus ``L - 1`` decode steps.
* ``kv_tokens`` after a step = sum over requests still active after the step of
  ``I + tokens generated so far`` (``I + 1`` right after the prefill); a request's KV is
  freed in the step it finishes.
* ``duration_s``: ``alpha_p + beta_p*tokens`` for a prefill, ``alpha_d + beta_d*j`` for
  a decode step. ``k`` is the policy's refill size when the step ran.
* ``finished`` ids within a step are in admission (queue) order.

The fast core (``simulate``) jumps from completion to completion (``events``): between two
steps in which a request finishes nothing can change the policy's decision, so the Python
loop runs once per *completion step*, and every per-step column (batch, KV tokens,
durations, ids) is then built for the whole run with numpy difference arrays
(``columns``). ``simulate_stepwise`` (``stepwise``) is the literal one-step-at-a-time
loop -- ``pdlib.steploop``, the loop the native engine runs; tests check that both give
identical logs. Lengths come from ``samplers``; the engine-protocol wrapper is
``pdlib.engines.sim.SimEngine``.

Pairing: real workloads come as (input, output) pairs whose lengths are dependent (a long
prompt often gets a short answer). Given both as arrays, ``simulate`` draws whole pairs
(``pairing="joint"``, the default); ``pairing="independent"`` resamples the two arrays on
their own -- the paper's independence assumption, named so. A ``Workload`` is served in
order, pairs intact.
"""

from __future__ import annotations

import time

import numpy as np

from .. import theory
from ..policy import ExclusiveBatching
from .columns import build_columns
from .events import DEFAULT_TIMING, NO_LIMIT, Stream, as_policy, event_loop
from .result import SimResult
from .samplers import Empirical, Geometric, InOrder, as_sampler


def simulate(
    N: int,
    policy_or_k,
    p: float | None = None,
    *,
    input_lens=None,
    output_lens=None,
    workload=None,
    steps: int | None = None,
    num_requests: int | None = None,
    seed: int = 0,
    timing: theory.TimingModel | None = None,
    record_steps: bool = True,
    max_tokens: int | None = None,
    kv_bytes_per_token: int | None = None,
    pairing: str = "joint",
) -> SimResult:
    """Simulate exclusive batching with ``N`` slots (see the module docstring for the counting).

    ``policy_or_k``: an int k (``FixedK``), a ``FixedK`` / ``DynamicKStar`` (mutated: a
    dynamic policy learns p as it runs) or an ``ExclusiveBatching``.
    Output lengths: ``output_lens=None`` -> Geometric(``p``); an array -> resampled with
    replacement; an int -> constant; any ``Sampler`` (``InOrder`` for exact order).
    Input lengths likewise (required unless ``workload`` is given). ``workload``: a
    ``Workload`` whose reference lengths are used in order (overrides both).
    ``pairing``: when both ``input_lens`` and ``output_lens`` are arrays (or ``Empirical``)
    they are read as paired samples -- element i of each is one request's (input, output) --
    and ``"joint"`` (the default) resamples whole pairs, keeping the workload's input/output
    dependence (the arrays must then have the same length); ``"independent"`` resamples
    each array on its own (inputs independent of outputs: the theory's assumption, and what
    ``simulate`` did before pairing existed). With one array, or samplers of another kind,
    there is nothing to pair and ``pairing`` has no effect.
    Stop after ``steps`` steps (the queue never empties; the last cycle is cut) and/or
    after ``num_requests`` requests have been served (the batch then drains).
    ``timing`` defaults to ``DEFAULT_TIMING``. ``seed`` fixes the lengths: request i has the
    same lengths in every run with that seed (common random numbers across k).
    """
    if not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    N = int(N)
    pol = as_policy(N, policy_or_k)
    timing = DEFAULT_TIMING if timing is None else timing
    if workload is not None:
        input_lens, output_lens = InOrder(workload.input_lens), InOrder(workload.output_lens)
    if output_lens is None:
        if p is None:
            raise ValueError("give p (geometric outputs) or output_lens")
        output_lens = Geometric(float(p))
    if input_lens is None:
        raise ValueError("input_lens is required: an int (constant), an array (resampled) or a sampler")
    out_s, in_s = as_sampler(output_lens, "output_lens"), as_sampler(input_lens, "input_lens")
    if pairing not in ("joint", "independent"):
        raise ValueError(f"pairing must be 'joint' or 'independent', got {pairing!r}")
    paired = pairing == "joint" and isinstance(out_s, Empirical) and isinstance(in_s, Empirical)
    if paired and in_s.values.size != out_s.values.size:
        raise ValueError(
            f"pairing='joint' needs input_lens and output_lens of the same length (paired samples), got "
            f"{in_s.values.size} and {out_s.values.size}; pass pairing='independent' to resample each on its own"
        )
    for name, v in (("steps", steps), ("num_requests", num_requests), ("max_tokens", max_tokens)):
        if v is not None and (int(v) != v or v < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    stream = Stream(in_s, out_s, int(seed), None if num_requests is None else int(num_requests), max_tokens,
                    paired=paired)
    if stream.size is None and steps is None:
        raise ValueError("an unbounded length source needs steps= or num_requests=")
    eb = ExclusiveBatching(pol)
    k0 = pol.k
    t0 = time.perf_counter()
    pf_clock, pf_n, D_end, k_changes = event_loop(eb, stream, NO_LIMIT if steps is None else int(steps))
    t_loop = time.perf_counter() - t0
    n_adm = int(pf_n.sum())
    stream.ensure(n_adm)
    I, L, Lraw = stream.arrays(n_adm)
    labels = None if workload is None else [r.id for r in workload.requests]
    cols, reqs = build_columns(
        pf_clock, pf_n, D_end, I, L, timing, k0, k_changes, kv_bytes_per_token, record_ids=record_steps,
        labels=labels,
    )
    reqs["ref_output_len"] = Lraw
    reqs["truncated"] = Lraw > L
    wall = time.perf_counter() - t0
    meta = {
        "engine": "sim",
        "N": N,
        "seed": int(seed),
        "timing": timing.as_kwargs(),
        "output_lens": repr(out_s) if not isinstance(out_s, (InOrder, Empirical)) else type(out_s).__name__,
        "input_lens": repr(in_s) if not isinstance(in_s, (InOrder, Empirical)) else type(in_s).__name__,
        "steps_limit": steps,
        "num_requests": num_requests,
        "max_tokens": max_tokens,
        "kv_bytes_per_token": kv_bytes_per_token,
        "pairing": "joint" if paired else ("in order" if workload is not None else "independent"),
        "wall_s": wall,
        "loop_s": t_loop,
        "counting": "prefill emits token 1; L-1 decode steps; KV = input + generated, freed on finish",
    }
    hist = list(getattr(pol, "history", []))
    return SimResult(cols, reqs, pol.describe(), meta, hist)
