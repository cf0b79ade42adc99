"""Machinery of the length-aware model (``pdlib.theory.lengths`` has the derivation and the
public API): binomial order statistics, the prepared length law, the stationary fixed point,
the cycle samplers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._validate import _check_nonneg, _check_p
from .lengths_binom import binom_sf

#: Largest decode-life grid (tokens): arrays of this size are FFT'd a few dozen times.
L_GRID_MAX = 1 << 22
_GEOM_TAIL = 1e-13   # geometric outputs are truncated where the tail mass falls below this


# --------------------------------------------------------------------------- length distributions


@dataclass(frozen=True, eq=False)
class LengthLaw:
    """A joint (input, output) length law prepared for the model, on the decode-life grid
    l = L-1 = 0..n-1 (only L >= 2; ``q1`` = P(L = 1), handled apart).

    ``f[l]`` = P(l | L >= 2); ``fin[l]`` = E[(I+1) 1{l}] | L >= 2 (input footprint mass);
    ``mu_I`` = mean input over *all* requests (prefill tokens); ``source`` = "pairs" or
    "geometric"; ``inputs``/``lives`` = the pairs (L >= 2) for the cycle sampler (None for
    geometric, whose inputs are drawn independently with ``mu_I``/``var_I``)."""
    f: np.ndarray
    fin: np.ndarray
    q1: float
    mu_I: float
    var_I: float
    mean_L: float
    n_pairs: int
    source: str
    p: float = float("nan")
    inputs: np.ndarray | None = None
    lives: np.ndarray | None = None
    outputs_all: np.ndarray | None = field(default=None, repr=False)
    inputs_all: np.ndarray | None = field(default=None, repr=False)


def length_law(input_lens, output_lens) -> LengthLaw:
    """Paired samples: element i of ``input_lens`` and ``output_lens`` is one request."""
    I = np.asarray(input_lens, dtype=float).ravel()
    L = np.asarray(output_lens, dtype=float).ravel()
    if I.size != L.size:
        raise ValueError(f"input_lens and output_lens must be paired (same length), got {I.size} and {L.size}")
    if L.size == 0:
        raise ValueError("need at least one (input, output) pair")
    if not (np.all(np.isfinite(I)) and np.all(np.isfinite(L))):
        raise ValueError("lengths must be finite")
    if np.any(I < 0) or np.any(L < 1) or np.any(I != np.floor(I)) or np.any(L != np.floor(L)):
        raise ValueError("input lengths must be integers >= 0 and output lengths integers >= 1")
    if L.max() - 1 > L_GRID_MAX:
        raise ValueError(f"output lengths above {L_GRID_MAX + 1} tokens are not supported (grid size)")
    keep = L >= 2
    if not keep.any():
        raise ValueError("every output has length 1: every request finishes in its prefill (no decode phase)")
    ell = (L[keep] - 1).astype(np.int64)
    n = int(ell.max()) + 1
    m = ell.size
    f = np.bincount(ell, minlength=n) / m
    fin = np.bincount(ell, weights=I[keep] + 1.0, minlength=n) / m
    return LengthLaw(f, fin, float(1 - m / L.size), float(I.mean()), float(I.var()), float(L.mean()),
                     int(L.size), "pairs", 1.0 / float(L.mean()), I[keep], ell, L, I)


def geometric_law(p, mu_I, var_I=0.0) -> LengthLaw:
    """Geometric(p) outputs on {1, 2, ...} independent of inputs with mean ``mu_I`` (the paper's
    model), truncated where the tail falls below 1e-13."""
    p = float(_check_p(p))
    mu_I = float(_check_nonneg("mu_I", mu_I))
    var_I = float(_check_nonneg("var_I", var_I))
    q1 = p
    if p >= 1:
        raise ValueError("p = 1: every request finishes in its prefill (no decode phase)")
    n = math.ceil(math.log(_GEOM_TAIL) / math.log1p(-p)) + 1
    if n > L_GRID_MAX:
        raise ValueError(f"p = {p} needs a grid of {n} > {L_GRID_MAX} steps")
    ell = np.arange(n)
    f = p * np.exp((ell - 1) * math.log1p(-p))   # P(l | L >= 2) = P(L = l+1)/(1-p)
    f[0] = 0.0
    f /= f.sum()
    return LengthLaw(f, f * (mu_I + 1.0), q1, mu_I, var_I, 1.0 / p, 0, "geometric", p)


# --------------------------------------------------------------------------- stationary cycle


def _renewal(g, n):
    """Renewal measure u(s) = sum_j P(S_j = s), s = 0..n-1, of i.i.d. increments with pmf g
    (g[0] = 0), by an exponentially damped FFT (aliasing ~e^-40, rounding ~e^10 * 1e-16)."""
    M = 1 << math.ceil(math.log2(max(4 * n, 8)))
    lam = 10.0
    t = np.arange(min(g.size, M))
    gr = np.zeros(M)
    gr[: t.size] = g[: t.size] * np.exp(-lam * t / n)
    ur = np.fft.irfft(1.0 / (1.0 - np.fft.rfft(gr)), M)[:n]
    return np.maximum(ur * np.exp(lam * np.arange(n) / n), 0.0)


def _remaining(f, u):
    """P(R = r) ∝ sum_s u(s) f(s + r), r = 0..n-1 (r = 0 has no mass: s < l)."""
    n = f.size
    M = 1 << math.ceil(math.log2(max(2 * n, 8)))
    c = np.fft.irfft(np.fft.rfft(f, M) * np.conj(np.fft.rfft(u, M)), M)[:n]
    c[0] = 0.0
    c = np.maximum(c, 0.0)
    return c / c.sum()


@dataclass(frozen=True, eq=False)
class Stationary:
    """The model's fixed point for (N, k, law): ``fR`` = law of the remaining life at a cycle
    start (index r), ``F`` its cdf, ``g`` = law of T' (k-th smallest of N-1 others), ``u`` =
    renewal measure of the survivors' ages, ``iterations``, ``residual`` (sup |dF|)."""
    N: int
    k: int
    law: LengthLaw
    fR: np.ndarray
    F: np.ndarray
    g: np.ndarray
    u: np.ndarray
    iterations: int
    residual: float


def stationary(N: int, k: int, law: LengthLaw, *, tol=1e-10, max_iter=500, init=None) -> Stationary:
    """Iterate F -> g -> u -> F (module docstring) to a fixed point; ``init``: a previous
    ``Stationary`` (e.g. for k-1) to start from."""
    N, k = _check_Nk(N, k)
    f = law.f
    n = f.size
    fR = f.copy() if init is None or init.fR.size != n else init.fR
    F = np.cumsum(fR)
    it, res = 0, float("inf")
    for it in range(1, max_iter + 1):
        G = binom_sf(N - 1, k, F)
        g = np.diff(np.concatenate([[0.0], G]))
        g[0] = 0.0
        u = _renewal(g, n)
        fR_new = _remaining(f, u)
        F_new = np.cumsum(fR_new)
        res = float(np.max(np.abs(F_new - F)))
        # damped update: the map can overshoot when a few lengths dominate
        fR = 0.5 * (fR + fR_new) if it > 20 else fR_new
        F = np.cumsum(fR)
        if res < tol:
            fR, F = fR_new, F_new
            break
    G = binom_sf(N - 1, k, F)
    g = np.diff(np.concatenate([[0.0], G]))
    g[0] = 0.0
    u = _renewal(g, n)
    return Stationary(N, k, law, fR, F, g, u, it, res)


def _check_Nk(N, k):
    if not isinstance(N, (int, np.integer)) or N < 2:
        raise ValueError(f"N must be an integer >= 2, got {N!r}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= N - 1:
        raise ValueError(f"k must be an integer in 1..N-1 = 1..{N - 1}, got {k!r}")
    return int(N), int(k)


def E_X0_lengths(st: Stationary) -> float:
    """Length-aware E[X0] (module docstring): N * sum_s u(s)(E[(I+1)1{l>s}] + s P(l>s)) / sum_s u(s)P(l>s)."""
    f, fin, u = st.law.f, st.law.fin, st.u
    surv = np.concatenate([np.cumsum(f[::-1])[::-1][1:], [0.0]])      # P(l > s)
    insurv = np.concatenate([np.cumsum(fin[::-1])[::-1][1:], [0.0]])  # E[(I+1) 1{l > s}]
    s = np.arange(f.size)
    den = float(np.dot(u, surv))
    return float(st.N * (np.dot(u, insurv) + np.dot(u, s * surv)) / den)


def sample_cycles(st: Stationary, cycles: int | None = None, seed: int = 0):
    """Draw ``cycles`` cycle starts of N i.i.d. slots from the model's slot law and return
    (X0, Xmax, supY, T, K) per cycle (numpy arrays). Pairs are drawn with weight U(l-1) (the
    length bias), the age given the pair with weight u(s) on 0..l-1."""
    N, k, law, u = st.N, st.k, st.law, st.u
    if cycles is None:
        cycles = max(1000, (1 << 21) // N)
    rng = np.random.default_rng(seed)
    U = np.cumsum(u)
    size = (cycles, N)
    if law.lives is not None:
        w = U[law.lives - 1]
        cw = np.cumsum(w)
        idx = np.minimum(np.searchsorted(cw, rng.random(size) * cw[-1], side="right"), cw.size - 1)
        ell = law.lives[idx]
        inp = law.inputs[idx]
    else:
        w = law.f[1:] * U[:-1]                 # l = 1..n-1
        cw = np.cumsum(w)
        ell = 1 + np.minimum(np.searchsorted(cw, rng.random(size) * cw[-1], side="right"), cw.size - 1)
        inp = _draw_inputs(law, rng, size)
    age = np.searchsorted(U, rng.random(size) * U[ell - 1], side="right")
    age = np.minimum(age, ell - 1)
    R = ell - age
    fp = inp + 1.0 + age
    return _cycle_functional(N, k, R, fp)


def _draw_fresh(law: LengthLaw, rng, size):
    """Decode lives l and footprints I + 1 of freshly admitted requests (L >= 2): whole pairs
    drawn uniformly from the sample, or l ~ f with the geometric law's inputs."""
    if law.lives is not None:
        j = rng.integers(0, law.lives.size, size)
        return law.lives[j], law.inputs[j] + 1.0
    # l = L - 1 given L >= 2 is Geometric(p) on {1, 2, ...} (memoryless), cut at the grid's end
    ell = np.minimum(rng.geometric(law.p, size), law.f.size - 1)
    return ell, _draw_inputs(law, rng, size) + 1.0


def _draw_inputs(law: LengthLaw, rng, size):
    if law.var_I > 0:
        sh, sc = law.mu_I ** 2 / law.var_I, law.var_I / law.mu_I
        return np.maximum(0.0, np.rint(rng.gamma(sh, sc, size)))
    return np.full(size, law.mu_I)


def _cohort_state(st: Stationary, M: int, C: int, rng):
    """M cycle starts with the cohort structure (``sample_cycles_cohorts``): remaining lives R
    and start footprints fp (M x N)."""
    N, law, g = st.N, st.law, st.g
    n = law.f.size
    cg = np.cumsum(g)
    cg = cg[: int(np.searchsorted(cg, cg[-1] * (1 - 1e-15))) + 1]    # the support (a short cdf searches faster)
    tau = 1 + np.minimum(np.searchsorted(cg, rng.random((M, C - 1)) * cg[-1], side="right") - 1, g.size - 2)
    tau = np.maximum(tau, 1)
    A = np.concatenate([np.zeros((M, 1), np.int64), np.cumsum(tau, axis=1)], axis=1)   # cohort ages
    Fl = np.cumsum(law.f)
    surv = 1.0 - Fl                                   # P(l > s)
    w = np.where(A < n, surv[np.minimum(A, n - 1)], 0.0)
    cw = np.cumsum(w, axis=1)
    cw /= cw[:, -1:]
    rows = np.repeat(np.arange(M), N).reshape(M, N)
    v = np.sort(rng.random((M, N)), axis=1)           # sorted keys: searchsorted walks forward
    flat = (cw + np.arange(M)[:, None]).ravel()
    coh = np.searchsorted(flat, (v + rows).ravel(), side="right").reshape(M, N) - rows * C
    coh = np.clip(coh, 0, C - 1)
    age = np.take_along_axis(A, coh, axis=1)
    if law.lives is not None:
        order = np.argsort(law.lives, kind="stable")
        lv, iv = law.lives[order], law.inputs[order]
        lo = np.searchsorted(lv, age, side="right")             # first pair with l > age
        lo = np.minimum(lo, lv.size - 1)
        idx = lo + np.floor(rng.random((M, N)) * (lv.size - lo)).astype(np.int64)
        idx = np.minimum(idx, lv.size - 1)
        ell, inp = lv[idx], iv[idx]
    else:
        ell = np.minimum(age + rng.geometric(law.p, (M, N)), n - 1)   # memoryless: l - a ~ Geometric(p)
        inp = _draw_inputs(law, rng, (M, N))
    ell = np.maximum(ell, age + 1)
    return ell - age, inp + 1.0 + age


def advance_cycle(st: Stationary, R, fp, rng):
    """One exact cycle of the slot dynamics applied to cycle starts (R, fp) (M x N): the decode
    phase runs to its k-th completion T (ties: every slot with R <= T finishes), survivors
    age by T (R - T, fp + T), and the refill puts a fresh request (``_draw_fresh``) in every
    freed slot. Returns the next cycle starts (R, fp)."""
    T = np.partition(R, st.k - 1, axis=1)[:, st.k - 1: st.k]
    done = R <= T
    l_new, fp_new = _draw_fresh(st.law, rng, R.shape)
    return np.where(done, l_new, R - T), np.where(done, fp_new, fp + T)


def sample_cycles_cohorts(st: Stationary, cycles: int | None = None, seed: int = 0, transitions: int = 2):
    """Cycle starts drawn with the *cohort* structure, then pushed through ``transitions`` exact
    cycles of the slot dynamics (``advance_cycle``).

    The cohort law: one history of past decode-phase lengths T'_1, T'_2, ... (i.i.d. ~ g) per
    sampled cycle start, shared by its N slots, so requests admitted by the same refill have
    exactly the same age A_c = T'_1 + ... + T'_c. Slot i is in cohort c with probability
    ∝ P(l > A_c) (a refill of the same expected size every cycle, times survival), its pair
    drawn from the pairs with l > A_c (input/output dependence kept). That law is not
    consistent with its own history: its last cycle boundary is not a completion time of its
    slots (a cohort can sit 2 steps before its end at the boundary, while in the process a
    boundary falls *on* a burst of completions -- slots of one refill holding the same length
    finish in the same step, and the k-th completion ends the phase). One exact transition
    makes the last boundary the k-th completion of the sampled slots, refilled by the exact
    K >= k. With ``transitions`` = m >= 1 the functional is averaged over the starts after
    transitions 1..m (a Cesàro mean of the push-forwards: when successive cycle lengths
    alternate -- lag-1 correlation near -1 with a few point masses -- one push-forward lands
    on one phase of the alternation); ``transitions=0`` is the raw cohort law.

    Returns (X0, Xmax, supY, T, K), each stacked over the transitions: row j*M + i is chain i
    after transition j+1 (M = ``cycles``), so chain averages are ``x.reshape(m, M).mean(0)``."""
    N, k, law, g = st.N, st.k, st.law, st.g
    rng = np.random.default_rng(seed)
    n = law.f.size
    Eg = float(np.dot(np.arange(g.size), g))
    C = int(min(n, math.ceil(1.5 * n / max(Eg, 1.0)) + 50))
    if cycles is None:
        cycles = max(256, min((1 << 20) // N, (1 << 22) // C))
    R, fp = _cohort_state(st, int(cycles), C, rng)
    if int(transitions) <= 0:
        return _cycle_functional(N, k, R, fp)
    out = []
    for _ in range(int(transitions)):
        R, fp = advance_cycle(st, R, fp, rng)
        out.append(_cycle_functional(N, k, R, fp))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def _cycle_functional(N, k, R, fp):
    """(X0, Xmax, supY, T, K) of cycles given remaining lives R and start footprints fp (M x N)."""
    order = np.argsort(R, axis=1, kind="stable")
    R = np.take_along_axis(R, order, axis=1)
    fp = np.take_along_axis(fp, order, axis=1)
    X0 = fp.sum(axis=1)
    tail = np.cumsum(fp[:, ::-1], axis=1)[:, ::-1]         # sum_{i >= j} fp_(i)
    j = np.arange(k)
    s = R[:, :k] - 1
    cand = np.where(s >= 1, tail[:, :k] + s * (N - j), -np.inf)
    Xmax = np.maximum(X0, cand.max(axis=1))
    T = R[:, k - 1]
    K = (R <= T[:, None]).sum(axis=1)
    return X0, Xmax, Xmax - X0, T, K


def cycle_moments(st: Stationary) -> dict:
    """Exact moments of one decode phase under approximation (A): ``E_T`` (decode steps),
    ``E_K`` (requests finishing, >= k; L >= 2 only), ``E_batch_steps`` = E[sum of the decode
    batches] = N E[min(R, T)] (module docstring of ``lengths``)."""
    N, k, F, fR = st.N, st.k, st.F, st.fR
    Fm = np.concatenate([[0.0], F[:-1]])               # F(s-1), s = 0..n-1 (F(-1) = 0)
    E_T = float((1.0 - binom_sf(N, k, Fm[1:])).sum())  # sum_{s>=1} P(T >= s) = sum P(Bin(N, F(s-1)) < k)
    others = 1.0 - binom_sf(N - 1, k, Fm)              # P(fewer than k of the others done by s-1)
    E_min = float(np.dot(1.0 - Fm[1:], others[1:]))
    E_K = N * float(np.dot(fR[1:], others[1:]))
    return {"E_T": E_T, "E_K": E_K, "E_batch_steps": N * E_min}
