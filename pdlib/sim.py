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

The fast core (``simulate``) jumps from completion to completion: between two
steps in which a request finishes nothing can change the policy's decision, so
the Python loop runs once per *completion step* (a heap keyed by finishing
step), and every per-step column (batch, KV tokens, durations, ids) is then built
for the whole run with numpy difference arrays. ``simulate_stepwise`` is the
literal one-step-at-a-time loop; tests check that both give identical logs.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import theory
from .policy import ExclusiveBatching, FixedK
from .records import COLUMNS, ProfileResult, RunResult, StepLog

#: Default timing model (seconds) when none is given: the balanced regime of
#: ``params/engines/sim.yaml`` -- prefill 20 ms + 20 us/token, decode 8 ms + 0.1 ms/request.
DEFAULT_TIMING = theory.TimingModel(alpha_p=0.02, beta_p=2e-5, alpha_d=0.008, beta_d=1e-4)

_CHUNK = 16384  # requests drawn per chunk: same prefix for every run with one seed (CRN)
_SH = 32  # heap key = finish_step << 32 | request index
_MASK = (1 << _SH) - 1
_NO_LIMIT = 1 << 62

# --------------------------------------------------------------------------- length samplers


class Sampler:
    """A source of lengths: ``draw(rng, n)`` -> int64 array; ``size`` is None when unbounded."""

    size: int | None = None

    def draw(self, rng, n: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Geometric(Sampler):
    """Geometric(p) on {1, 2, ...} (mean 1/p): the theory's output lengths."""

    p: float

    def __post_init__(self):
        theory._check_p(self.p)

    def draw(self, rng, n):
        return rng.geometric(self.p, size=n).astype(np.int64)


@dataclass(frozen=True)
class Constant(Sampler):
    value: int

    def __post_init__(self):
        if not (float(self.value) >= 0 and float(self.value) == int(self.value)):
            raise ValueError(f"constant length must be an integer >= 0, got {self.value!r}")

    def draw(self, rng, n):
        return np.full(n, int(self.value), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Empirical(Sampler):
    """Resampled with replacement from ``values`` (e.g. a dataset's lengths)."""

    values: np.ndarray

    def __post_init__(self):
        v = np.asarray(self.values)
        if v.size == 0:
            raise ValueError("empirical lengths must not be empty")
        object.__setattr__(self, "values", _int_lengths(v, "empirical lengths"))

    def draw(self, rng, n):
        return self.values[rng.integers(0, self.values.size, size=n)]


@dataclass(frozen=True, eq=False)
class InOrder(Sampler):
    """Exactly ``values``, in order (a workload's lengths); a finite stream."""

    values: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "values", _int_lengths(np.asarray(self.values), "lengths"))

    @property
    def size(self):
        return int(self.values.size)

    def draw(self, rng, n):
        raise RuntimeError("InOrder lengths are not drawn")


@dataclass(frozen=True)
class GammaInt(Sampler):
    """Gamma with the given mean and variance, rounded to integers >= 1 (input lengths
    with a variance, ``pdlib simulate --var-input``); var = 0 gives the constant."""

    mean: float
    var: float

    def __post_init__(self):
        theory._check_pos("mean", self.mean)
        theory._check_nonneg("var", self.var)

    def draw(self, rng, n):
        if self.var == 0:
            return np.full(n, max(1, round(self.mean)), dtype=np.int64)
        shape, scale = self.mean**2 / self.var, self.var / self.mean
        return np.maximum(1, np.rint(rng.gamma(shape, scale, size=n))).astype(np.int64)


def _int_lengths(v: np.ndarray, what: str) -> np.ndarray:
    if v.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    if v.size and (np.any(~np.isfinite(v.astype(float))) or np.any(v < 0) or np.any(v != np.floor(v))):
        raise ValueError(f"{what} must be finite integers >= 0")
    return v.astype(np.int64)


def as_sampler(x, what: str) -> Sampler:
    """int -> Constant, array/list -> Empirical (with replacement), Sampler -> itself."""
    if isinstance(x, Sampler):
        return x
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and float(x).is_integer()):
        return Constant(int(x))
    if isinstance(x, (list, tuple, np.ndarray)):
        return Empirical(np.asarray(x))
    raise ValueError(
        f"{what} must be an int (constant), an array (resampled) or a pdlib.sim sampler, got {x!r}"
    )


class _Stream:
    """Lazily drawn (input, output) lengths in fixed chunks, so request i has the same
    lengths in every run with one seed however many requests a run consumes."""

    def __init__(self, inp: Sampler, out: Sampler, seed: int, limit: int | None, max_tokens):
        self.inp, self.out, self.max_tokens = inp, out, max_tokens
        self.rng_in, self.rng_out = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        sizes = [s.size for s in (inp, out) if s.size is not None] + ([limit] if limit is not None else [])
        self.size = min(sizes) if sizes else None
        if isinstance(out, InOrder) and out.values.size and out.values[: self.size].min() < 1:
            i = int(np.argmin(out.values[: self.size]))
            raise ValueError(f"output lengths must be >= 1 token: request index {i} has {int(out.values[i])}")
        self.I: list[np.ndarray] = []
        self.Lraw: list[np.ndarray] = []
        self.L: list[int] = []  # capped output lengths as a Python list (fast indexing)
        self.n = 0

    def _chunk(self, s: Sampler, rng) -> np.ndarray:
        if s.size is not None:
            return s.values[self.n : self.n + _CHUNK]
        return s.draw(rng, _CHUNK)

    def ensure(self, n: int) -> None:
        while self.n < n and (self.size is None or self.n < self.size):
            i_, o_ = self._chunk(self.inp, self.rng_in), self._chunk(self.out, self.rng_out)
            m = min(len(i_), len(o_))
            i_, o_ = np.asarray(i_[:m], dtype=np.int64), np.asarray(o_[:m], dtype=np.int64)
            if m == 0:
                break
            if o_.min() < 1:
                raise ValueError(
                    f"output lengths must be >= 1 token: request index {self.n + int(np.argmin(o_))} "
                    f"has {int(o_.min())}"
                )
            if i_.min() < 0:
                raise ValueError(f"input lengths must be >= 0: request index {self.n + int(np.argmin(i_))}")
            self.I.append(i_)
            self.Lraw.append(o_)
            self.L.extend((o_ if self.max_tokens is None else np.minimum(o_, self.max_tokens)).tolist())
            self.n += m

    def arrays(self, n: int):
        I = np.concatenate(self.I)[:n] if self.I else np.zeros(0, np.int64)
        Lr = np.concatenate(self.Lraw)[:n] if self.Lraw else np.zeros(0, np.int64)
        return I, np.asarray(self.L[:n], dtype=np.int64), Lr


# --------------------------------------------------------------------------- ragged id columns


class RaggedIds(Sequence):
    """Per-step id lists stored compactly: step i holds ``values[offsets[i]:offsets[i+1]]``
    (mapped through ``labels`` when given). Behaves as a read-only list of lists."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, labels=None):
        self.values, self.offsets, self.labels = values, offsets, labels

    def __len__(self):
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        v = self.values[self.offsets[i] : self.offsets[i + 1]]
        if self.labels is None:
            return v.tolist()
        return [self.labels[x] for x in v.tolist()]

    def __repr__(self):
        return f"RaggedIds({len(self)} steps, {len(self.values)} ids)"


# --------------------------------------------------------------------------- result


@dataclass
class SimResult:
    """Output of ``simulate``: per-step ``columns`` (numpy; the StepLog schema), per-request
    arrays (``input_len``, ``output_len`` = capped reference length, ``ref_output_len``,
    ``admit_step``, ``finish_step`` (-1: not finished), ``generated``), the policy's
    description and k history, and ``meta``. ``log`` is a ``StepLog`` (None with
    ``record_steps=False``)."""

    columns: dict
    requests: dict
    policy: dict
    meta: dict
    log: StepLog | None = None
    k_history: list = field(default_factory=list)

    @property
    def request_steps(self) -> int:
        """Sum of decode batch sizes (request-steps)."""
        c = self.columns
        return int(c["batch_size"][~c["is_prefill"]].sum())

    def summary(self, warmup="auto") -> dict:
        from . import metrics

        return {
            **metrics.memory_summary(self.columns, warmup=warmup),
            **metrics.throughput_summary(self.columns),
        }


# --------------------------------------------------------------------------- the fast core


def _as_policy(N: int, policy_or_k):
    if isinstance(policy_or_k, (int, np.integer)):
        return FixedK(int(N), int(policy_or_k))
    if isinstance(policy_or_k, ExclusiveBatching):
        pol = policy_or_k.policy
    else:
        pol = policy_or_k
    if not hasattr(pol, "k") or not hasattr(pol, "N"):
        raise ValueError(
            f"policy must be an int k, a FixedK/DynamicKStar or an ExclusiveBatching, got {policy_or_k!r}"
        )
    if int(pol.N) != int(N):
        raise ValueError(f"policy.N={pol.N} does not match N={N}")
    return pol


def _event_loop(eb: ExclusiveBatching, stream: _Stream, steps_limit: int):
    """Run the policy from completion step to completion step.

    Returns (pf_clock, pf_n, D_end, k_changes) where prefill j ran after ``pf_clock[j]``
    decode steps and admitted ``pf_n[j]`` requests (in queue order), ``D_end`` is the
    number of decode steps run, and ``k_changes`` lists (global step, new k) after
    which the policy's k changed."""
    pol = eb.policy
    feedback = not isinstance(pol, FixedK)
    R = _NO_LIMIT if stream.size is None else stream.size
    Ls = stream.L
    heap: list[int] = []
    push, pop = heapq.heappush, heapq.heappop
    pf_clock: list[int] = []
    pf_n: list[int] = []
    k_changes: list[tuple[int, int]] = []
    last_k = pol.k
    D = 0
    nxt = 0
    next_action = eb.next_action
    while True:
        act, n = next_action(len(heap), R - nxt)
        if act == "prefill":
            npf = len(pf_clock)
            if D + npf >= steps_limit:
                break
            if nxt + n > len(Ls):
                stream.ensure(nxt + n)
                Ls = stream.L
            pf_clock.append(D)
            pf_n.append(n)
            base = D - 1
            done = []
            for i in range(nxt, nxt + n):
                L = Ls[i]
                if L > 1:
                    push(heap, ((base + L) << _SH) | i)
                else:
                    done.append(L)
            nxt += n
            if feedback and done:
                eb.on_finished(done)
                if pol.k != last_k:
                    last_k = pol.k
                    k_changes.append((D + npf, last_k))
            continue
        if act == "done":
            break
        t = heap[0] >> _SH
        npf = len(pf_clock)
        if t - 1 + npf >= steps_limit:
            D = steps_limit - npf
            break
        D = t
        if feedback:
            lens = []
            while heap and heap[0] >> _SH == t:
                lens.append(Ls[pop(heap) & _MASK])
            eb.on_finished(lens)
            if pol.k != last_k:
                last_k = pol.k
                k_changes.append((t - 1 + npf, last_k))
        else:
            while heap and heap[0] >> _SH == t:
                pop(heap)
    return (np.asarray(pf_clock, dtype=np.int64), np.asarray(pf_n, dtype=np.int64), int(D), k_changes)


def _build_columns(pf_clock, pf_n, D_end, I, L, timing, k0, k_changes, kv_bytes_per_token, record_ids):
    """Every per-step column for the whole run from the prefill events (vectorized)."""
    n_pf = pf_clock.size
    n_adm = int(pf_n.sum())
    I, L = I[:n_adm], L[:n_adm]
    pf_idx = np.repeat(np.arange(n_pf), pf_n)
    a = pf_clock[pf_idx]  # decode clock at admission
    fin = a + L - 1  # decode clock of the finishing step (== a: in prefill)
    S = D_end + n_pf
    g_pf = pf_clock + np.arange(n_pf)  # global index of prefill j
    is_prefill = np.zeros(S, dtype=bool)
    is_prefill[g_pf] = True

    # decode steps d = 1..D_end: batch = #{a < d <= fin}; alive after = #{a < d < fin}
    dec = fin > a
    a_d, f_d = a[dec], fin[dec]
    size = D_end + 2
    f_cl = np.minimum(f_d, D_end + 1)
    batch = np.cumsum(
        np.bincount(a_d + 1, minlength=size)[:size] - np.bincount(f_cl + 1, minlength=size + 1)[:size]
    )
    w = (I[dec] + 1 - a_d).astype(np.float64)
    wsum = np.cumsum(
        np.bincount(a_d + 1, weights=w, minlength=size)[:size]
        - np.bincount(f_cl, weights=w, minlength=size + 1)[:size]
    )
    alive = np.cumsum(
        np.bincount(a_d + 1, minlength=size)[:size] - np.bincount(f_cl, minlength=size + 1)[:size]
    )
    dd = np.arange(size)
    kv_dec = np.rint(wsum + dd * alive).astype(np.int64)  # kv_dec[0] = 0 (nothing decoded yet)

    # prefill j: KV after = kv_dec(c_j) + what prefills at the same clock (<= j) admitted and kept
    keep = (I + 1) * dec
    add = np.bincount(pf_idx, weights=keep.astype(np.float64), minlength=n_pf) if n_pf else np.zeros(0)
    cum = np.cumsum(add)
    first = np.searchsorted(pf_clock, pf_clock, side="left")
    before = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    kv_pf = kv_dec[pf_clock] + np.rint(cum - before).astype(np.int64)
    pf_tokens = np.bincount(pf_idx, weights=I.astype(np.float64), minlength=n_pf).astype(np.int64)

    kv = np.empty(S, dtype=np.int64)
    bs = np.empty(S, dtype=np.int64)
    tok = np.empty(S, dtype=np.int64)
    kv[is_prefill], kv[~is_prefill] = kv_pf, kv_dec[1 : D_end + 1]
    bs[is_prefill], bs[~is_prefill] = pf_n, batch[1 : D_end + 1]
    tok[is_prefill], tok[~is_prefill] = pf_tokens, batch[1 : D_end + 1]
    dur = np.where(is_prefill, timing.alpha_p + timing.beta_p * tok, timing.alpha_d + timing.beta_d * bs)

    # request step indices
    admit_step = g_pf[pf_idx]
    done = fin <= D_end
    dec_fin_step = fin - 1 + np.searchsorted(pf_clock, fin - 1, side="right")
    finish_step = np.where(done, np.where(dec, dec_fin_step, admit_step), -1)
    generated = np.where(done, L, np.minimum(L, 1 + D_end - a))

    # k column
    kcol = np.full(S, int(k0), dtype=np.int64)
    for g, kk in k_changes:
        kcol[g + 1 :] = kk
    cols = {
        "step": np.arange(S, dtype=np.int64),
        "is_prefill": is_prefill,
        "batch_size": bs,
        "tokens": tok,
        "kv_tokens": kv,
        "kv_bytes": (kv * float(kv_bytes_per_token)) if kv_bytes_per_token else np.full(S, np.nan),
        "duration_s": dur,
        "k": kcol,
    }
    fin_counts = np.bincount(finish_step[done], minlength=S)[:S] if S else np.zeros(0, np.int64)
    cols["finished_count"] = fin_counts
    if record_ids:
        ids = np.nonzero(done)[0]
        order = np.argsort(finish_step[ids], kind="stable")
        cols["_finished_ids"] = (ids[order], np.concatenate([[0], np.cumsum(fin_counts)]))
        adm_counts = np.zeros(S, dtype=np.int64)
        adm_counts[g_pf] = pf_n
        cols["_admitted_ids"] = (np.arange(n_adm), np.concatenate([[0], np.cumsum(adm_counts)]))
    reqs = {
        "input_len": I,
        "output_len": L,
        "admit_step": admit_step,
        "finish_step": finish_step,
        "generated": generated,
    }
    return cols, reqs


def _steplog(cols, labels=None) -> StepLog:
    S = len(cols["step"])
    phase = np.empty(S, dtype=object)
    phase[:] = "decode"
    phase[cols["is_prefill"]] = "prefill"
    fv, fo = cols["_finished_ids"]
    av, ao = cols["_admitted_ids"]
    return StepLog.from_columns(
        step=cols["step"],
        phase=phase,
        batch_size=cols["batch_size"],
        tokens=cols["tokens"],
        kv_tokens=cols["kv_tokens"],
        kv_bytes=cols["kv_bytes"],
        duration_s=cols["duration_s"],
        k=cols["k"],
        finished=RaggedIds(fv, fo, labels),
        admitted=RaggedIds(av, ao, labels),
    )


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
) -> SimResult:
    """Simulate exclusive batching with ``N`` slots (see the module docstring for the counting).

    ``policy_or_k``: an int k (``FixedK``), a ``FixedK`` / ``DynamicKStar`` (mutated: a
    dynamic policy learns p as it runs) or an ``ExclusiveBatching``.
    Output lengths: ``output_lens=None`` -> Geometric(``p``); an array -> resampled with
    replacement; an int -> constant; any ``Sampler`` (``InOrder`` for exact order).
    Input lengths likewise (required unless ``workload`` is given). ``workload``: a
    ``Workload`` whose reference lengths are used in order (overrides both).
    Stop after ``steps`` steps (the queue never empties; the last cycle is cut) and/or
    after ``num_requests`` requests have been served (the batch then drains).
    ``timing`` defaults to ``DEFAULT_TIMING``. ``seed`` fixes the lengths: request i has the
    same lengths in every run with that seed (common random numbers across k).
    """
    if not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    N = int(N)
    pol = _as_policy(N, policy_or_k)
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
    for name, v in (("steps", steps), ("num_requests", num_requests), ("max_tokens", max_tokens)):
        if v is not None and (int(v) != v or v < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    stream = _Stream(in_s, out_s, int(seed), None if num_requests is None else int(num_requests), max_tokens)
    if stream.size is None and steps is None:
        raise ValueError("an unbounded length source needs steps= or num_requests=")
    eb = ExclusiveBatching(pol)
    k0 = pol.k
    t0 = time.perf_counter()
    pf_clock, pf_n, D_end, k_changes = _event_loop(eb, stream, _NO_LIMIT if steps is None else int(steps))
    t_loop = time.perf_counter() - t0
    n_adm = int(pf_n.sum())
    stream.ensure(n_adm)
    I, L, Lraw = stream.arrays(n_adm)
    cols, reqs = _build_columns(
        pf_clock, pf_n, D_end, I, L, timing, k0, k_changes, kv_bytes_per_token, record_ids=record_steps
    )
    reqs["ref_output_len"] = Lraw
    reqs["truncated"] = Lraw > L
    labels = None
    if workload is not None:
        labels = [r.id for r in workload.requests]
    log = _steplog(cols, labels) if record_steps else None
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
        "wall_s": wall,
        "loop_s": t_loop,
        "counting": "prefill emits token 1; L-1 decode steps; KV = input + generated, freed on finish",
    }
    hist = list(getattr(pol, "history", []))
    return SimResult(cols, reqs, pol.describe(), meta, log, hist)


# --------------------------------------------------------------------------- literal reference


def simulate_stepwise(
    N: int,
    policy_or_k,
    workload,
    *,
    timing=None,
    max_tokens=None,
    kv_bytes_per_token=None,
    steps: int | None = None,
) -> StepLog:
    """The literal simulator: one Python iteration per step, asking ``ExclusiveBatching``
    for every decision. Slow; it exists so tests (and sceptics) can check that
    ``simulate`` produces the identical log. Ids are the workload's request ids."""
    from .records import StepRecord

    pol = _as_policy(int(N), policy_or_k)
    timing = DEFAULT_TIMING if timing is None else timing
    eb = ExclusiveBatching(pol)
    reqs = workload.requests
    queue = 0
    active: list[list] = []  # [queue index, input, generated, L]
    log = StepLog()
    step = 0
    while steps is None or step < steps:
        k_now = pol.k
        act, n = eb.next_action(len(active), len(reqs) - queue)
        if act == "done":
            break
        if act == "prefill":
            new = []
            for i in range(queue, queue + n):
                L = reqs[i].output_len if max_tokens is None else min(reqs[i].output_len, max_tokens)
                new.append([i, reqs[i].input_len, 1, L])
            queue += n
            tokens = sum(r[1] for r in new)
            finished = [r for r in new if r[2] >= r[3]]
            active += [r for r in new if r[2] < r[3]]
            dur = float(timing.prefill_time(tokens))
            admitted = [reqs[r[0]].id for r in new]
            batch = n
        else:
            batch = tokens = len(active)
            for r in active:
                r[2] += 1
            finished = [r for r in active if r[2] >= r[3]]
            active = [r for r in active if r[2] < r[3]]
            dur = float(timing.decode_time(batch))
            admitted = []
        finished.sort(key=lambda r: r[0])
        kv = sum(r[1] + r[2] for r in active)
        log.append(
            StepRecord(
                step=step,
                phase=act,
                batch_size=batch,
                tokens=tokens,
                kv_tokens=kv,
                duration_s=dur,
                k=k_now,
                kv_bytes=kv * kv_bytes_per_token if kv_bytes_per_token else None,
                finished=[reqs[r[0]].id for r in finished],
                admitted=admitted,
            )
        )
        if finished:
            eb.on_finished([r[3] for r in finished])
        step += 1
    return log


# --------------------------------------------------------------------------- the engine


class SimEngine:
    """Engine protocol implementation backed by ``simulate`` (``get_engine("sim", ...)``).

    ``timing``: a ``theory.TimingModel`` (or a dict of alpha_p, beta_p, alpha_d, beta_d;
    default ``DEFAULT_TIMING``); ``kv_bytes_per_token`` fills the ``kv_bytes`` column;
    ``seed`` seeds ``profile``'s optional noise (``run`` is deterministic)."""

    name = "sim"

    def __init__(
        self,
        timing: theory.TimingModel | dict | None = None,
        kv_bytes_per_token: int | None = None,
        seed: int = 0,
        **ignored,
    ):
        if isinstance(timing, dict):
            timing = theory.TimingModel(
                **{k: float(timing[k]) for k in ("alpha_p", "beta_p", "alpha_d", "beta_d")}
            )
        self.timing = DEFAULT_TIMING if timing is None else timing
        self.kv_bytes_per_token = kv_bytes_per_token
        self.seed = int(seed)
        self.ignored_config = sorted(ignored)

    def run(
        self,
        workload,
        policy,
        *,
        termination: str = "dataset",
        max_tokens: int | None = None,
        progress: bool = False,
    ) -> RunResult:
        """Serve every request of ``workload`` (in order) under ``policy``; each stops at
        its reference output length (capped by ``max_tokens``)."""
        if termination != "dataset":
            raise ValueError(
                f"termination must be 'dataset' for the simulator (it has no model to emit EOS), "
                f"got {termination!r}"
            )
        if len(workload) == 0:
            raise ValueError(f"workload {workload.name!r} has no requests")
        res = simulate(
            int(policy.N),
            policy,
            workload=workload,
            timing=self.timing,
            max_tokens=max_tokens,
            kv_bytes_per_token=self.kv_bytes_per_token,
        )
        r = res.requests
        reqs = []
        for i, req in enumerate(workload.requests):
            fs = int(r["finish_step"][i])
            reqs.append(
                {
                    "id": req.id,
                    "input_len": int(r["input_len"][i]),
                    "output_len": int(r["generated"][i]),
                    "ref_output_len": int(req.output_len),
                    "admit_step": int(r["admit_step"][i]),
                    "finish_step": fs if fs >= 0 else None,
                    "truncated": bool(r["truncated"][i]),
                }
            )
        meta = dict(
            res.meta,
            engine="sim",
            termination=termination,
            policy=res.policy,
            workload=workload.name,
            device="simulated (timing model)",
            ignored_config=self.ignored_config,
            k_history=res.k_history,
        )
        return RunResult(res.log, reqs, meta)

    def profile(
        self,
        prefill_tokens=(16, 64, 128, 256, 512),
        batch_sizes=(1, 2, 4, 8, 16, 32, 64),
        context_lens=(64, 256),
        repeats: int = 3,
        noise: float = 0.0,
        **ignored,
    ) -> ProfileResult:
        """Timing samples from the timing model itself (multiplicative Gaussian ``noise``,
        e.g. 0.02 for 2 %, seeded), fitted back with ``theory.fit_timing``."""
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        rng = np.random.default_rng(self.seed)
        jitter = (lambda: 1.0 + noise * rng.standard_normal()) if noise else (lambda: 1.0)
        pre = [
            {"tokens": int(t), "num_requests": 1, "seconds": float(self.timing.prefill_time(t)) * jitter()}
            for t in prefill_tokens
            for _ in range(int(repeats))
        ]
        dec = [
            {"batch": int(b), "context_len": int(c), "seconds": float(self.timing.decode_time(b)) * jitter()}
            for b in batch_sizes
            for c in context_lens
            for _ in range(int(repeats))
        ]
        return ProfileResult.from_samples(
            pre,
            dec,
            {"engine": "sim", "noise": noise, "seed": self.seed, "timing_true": self.timing.as_kwargs()},
        )


__all__ = [
    "COLUMNS",
    "DEFAULT_TIMING",
    "Constant",
    "Empirical",
    "GammaInt",
    "Geometric",
    "InOrder",
    "RaggedIds",
    "SimEngine",
    "SimResult",
    "as_sampler",
    "simulate",
    "simulate_stepwise",
]
