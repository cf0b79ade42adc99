"""Length-aware theory of exclusive batching: memory (E[X0], E[Xmax], E[sup Y]) and throughput
for any *joint* distribution of (input, output) lengths, any N*p (pure numpy).

The paper's formulas (``memory.D``, ``memory.kappa``, ``timing.throughput``, ``timing.k_star``)
assume Geometric(p) outputs independent of the inputs, and at most one completion per decode
step. This module drops those assumptions; the paper's forms stay under their own names, and
``lengths_validity`` says when they hold; the machinery is in ``lengths_core``.

Counting (the simulator's, ``pdlib.sim.core``): a request with input I and output L is
admitted by a prefill that emits token 1 (KV I+1), then needs l = L-1 decode steps, KV growing
by 1 per step, freed in the step it finishes. N slots decode in lockstep; the decode phase ends
in the step where the k-th completion happens (several can finish in that step) and one
prefill refills *every* free slot (>= k), so each decode phase starts with N requests.

Derivation (the "renewal / mean-field slot" model)
-------------------------------------------------
State at a cycle start: N slots, slot i holding (I_i, l_i, age a_i) (decode steps done),
remaining life R_i = l_i - a_i >= 1. Two approximations, both exact for geometric outputs:

(A) *Slots are i.i.d. at a cycle start*, with the stationary law pi of one slot. Then the
    decode-phase length T is the k-th order statistic of R_1..R_N:
    ``P(T <= t) = P(Bin(N, F(t)) >= k)``, F = cdf of R under pi -- finite-N order statistics,
    ties included, so several completions per step are counted exactly.
(B) *A survivor's ages form a renewal process.* Slot i survives the cycle iff the k-th smallest
    remaining life among the N-1 *others*, T', is < R_i; then T = T' and its age grows by T'.
    T' has ``P(T' <= t) = P(Bin(N-1, F(t)) >= k)`` and does not depend on slot i, so a request
    of decode life l is present at the cycle starts at ages S_0 = 0, S_1 = T'_1, S_2 = T'_1+T'_2,
    ... for as long as S_j < l, with i.i.d. increments T'_j ~ g. Let u(s) = sum_j P(S_j = s) be
    the renewal measure of g (u = delta_0 + g * u, solved by an exponentially damped FFT).

Renewal-reward over requests then gives the slot law: a pair (I, l) is found in a slot at a
cycle start with age s with weight ``f(I, l) u(s) 1{s < l}`` -- *length-biased sampling*: long
requests are present at many cycle starts, weighted by U(l-1) = sum_{s<l} u(s), not by 1; the
inputs of the survivors are those of the length-biased pairs (input/output correlation). Hence
the fixed point: F -> g (order statistic of N-1) -> u (renewal) -> the remaining-life law
``P(R = r) ∝ sum_s u(s) f_l(s + r)`` -> F, iterated to convergence, and

    E[X0] = N * sum_s u(s) (E[(I+1) 1{l > s}] + s P(l > s)) / sum_s u(s) P(l > s).

For geometric outputs R is Geometric whatever the age (memoryless), g is the exact law of T'
and E[X0] is exact (up to the L = 1 rule below: E[X0] is linear in the slots, so (A) costs
nothing there); the paper's D(theta) is its N -> inf, p -> 0, one-completion-per-step limit.
E[Xmax] = E[X0] + E[sup Y]: within a cycle KV after decode step s is
``sum_i (I_i+1+a_i+s) 1{R_i > s}``, piecewise linear between completions, so its sup is at s = 0
or one step before a completion time. E[sup Y] is that functional's mean over model cycle starts
(``sample_cycles_cohorts``), drawn in two stages:

(C) *Cohort law.* One history of past decode-phase lengths T'_1, T'_2, ... ~ g per cycle start,
    shared by its N slots, so requests admitted by the same refill have the same age
    A_c = T'_1 + ... + T'_c and finish together when their lengths coincide; slot i is in
    cohort c with probability ∝ P(l > A_c), its pair drawn from the pairs with l > A_c.
(D) *Exact cycle transitions.* (C) is inconsistent with its own history: its last boundary
    T'_1 is drawn independently of its slots, whereas in the process a boundary is the k-th
    completion *of those slots* and so falls on a burst of completions (same length, same
    refill: the whole burst leaves, K >= k), not 1-2 steps before one. The starts of (C) are
    therefore pushed through the exact one-cycle kernel of the slot dynamics
    (``advance_cycle``: run to the k-th completion T, survivors age by T, every freed slot
    gets a fresh pair), and the functional is averaged over the starts after 1 and 2
    transitions (``COHORT_TRANSITIONS``; the Cesàro mean handles the period-2 alternation of
    cycle lengths that a few point masses produce, lag-1 correlation down to -0.999). This is
    pi_C P and pi_C P^2 for the exact kernel P from the model's law pi_C -- two steps of the
    power iteration towards the stationary law, not a run of the serving process to
    stationarity; it makes the last two boundaries, the refill sizes and the burst structure
    exact, older history stays that of (B). Seeded Monte Carlo over <= 2^20 sampled slots
    (each transitioned twice), 0.2-0.6 s. ``sample_cycles`` draws the slots independently
    (no shared ages).
Throughput (renewal-reward): requests per cycle E[K] = N P(R <= T), with
``P(R <= T) = sum_r P(R=r) P(Bin(N-1, F(r-1)) < k)``; decode time ``alpha_d E[T] + beta_d N E[min(R,
T)]`` with ``E[T] = sum_s P(Bin(N, F(s-1)) < k)`` and ``E[min(R, T)] = sum_s (1-F(s-1)) P(Bin(N-1,
F(s-1)) < k)``; prefill ``alpha_p + beta_p mu_I E[K]`` -- no "one completion per step" anywhere.

Captured: residual life and length-biased sampling of the survivors; the survivors' inputs
(correlation); several completions per step and refills larger than k; finite N (order
statistics, the slot's own contribution to the k-th completion); for E[sup Y] also the
cohorts (one refill's requests share their age) and, through (D), the exact refill sizes and
the alignment of the last two cycle boundaries with bursts of completions. Approximate: (A)
ignores the correlation *between* slots that a common history induces (after a long cycle all
survivors are older together), (B) ignores the correlation of successive cycle lengths (lag-1
-0.74 on sharegpt's 24 pairs at N = 64, theta = 0.5); both vanish for geometric outputs and
as N grows at fixed theta, and are largest for small N with few, strongly non-geometric
lengths (a few dozen distinct pairs, point masses at an output cap). E[X0] keeps (A)-(B) (up
to +1.5 % there, +2.1 % on burstgpt N = 256 theta = 0.5). For E[sup Y], (C) alone was off by
-40 % (sharegpt, N = 64, theta = 0.5) and +23/+27 % (azure-conv, theta = 0.5: 3.4 % of the
outputs at the 512 cap); (D) brings these within 12 %. Where sup Y > 0 is a rare event (a
few tokens on a footprint of 10^5, P(sup Y > 0) < 1 %), the sampler's own Monte Carlo error
(``se_supY``) is 20-100 % of the value and so is the simulator's: such cells cannot be
judged by a relative error. Requests with L = 1 finish in their prefill: they are dropped from the
slot law (their slot is taken to be refilled at once; in the simulator it can stay free until
the next refill) and added back to completions and prefill tokens. No block rounding (tokens).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

from . import memory as _paper_mem
from . import timing as _paper_timing
from .lengths_core import (
    E_X0_lengths,
    LengthLaw,
    Stationary,
    advance_cycle,
    binom_sf,
    cycle_moments,
    geometric_law,
    length_law,
    sample_cycles,
    sample_cycles_cohorts,
    stationary,
)
from .lengths_validity import Validity, paper_validity

__all__ = [
    "E_X0_lengths",
    "KStarLengths",
    "LengthLaw",
    "MemoryLengths",
    "Stationary",
    "ThroughputLengths",
    "Validity",
    "advance_cycle",
    "binom_sf",
    "cycle_moments",
    "geometric_law",
    "k_star_lengths",
    "length_law",
    "memory_model_lengths",
    "paper_validity",
    "sample_cycles",
    "sample_cycles_cohorts",
    "stationary",
    "throughput_lengths",
]


def _law(input_lens, output_lens, p, mu_L, var_L, law) -> LengthLaw:
    if law is not None:
        return law
    if output_lens is not None:
        if input_lens is None:
            raise ValueError("give input_lens paired with output_lens (or mu_L and p for geometric outputs)")
        if np.ndim(input_lens) == 0:
            input_lens = np.full(np.size(output_lens), input_lens)
        return length_law(input_lens, output_lens)
    if p is None or mu_L is None:
        raise ValueError("give paired input_lens/output_lens, or p and mu_L (geometric outputs)")
    return geometric_law(p, mu_L, var_L)


def _model_validity(law: LengthLaw, st: Stationary) -> tuple[Validity, ...]:
    out = [
        Validity("fixed_point_converged", bool(st.residual <= 1e-6), st.residual, 1e-6,
                 f"stationary slot law after {st.iterations} iterations (sup |dF|)"),
        Validity("few_single_token", bool(law.q1 <= 0.05), law.q1, 0.05,
                 "requests with L = 1 finish in their prefill; the model refills their slot at once"),
    ]
    if law.source == "pairs":
        out.append(Validity("enough_pairs", bool(law.n_pairs >= 100), float(law.n_pairs), 100.0,
                            "the model takes the paired sample as the population"))
    return tuple(out)


def _paper_checks(N, law: LengthLaw):
    p = 1.0 / law.mean_L
    if law.source == "pairs":
        return paper_validity(N, p, law.mu_I, law.inputs_all, law.outputs_all)
    return paper_validity(N, p, law.mu_I)


class _Json:
    def to_dict(self) -> dict:
        d = asdict(self)
        d["validity"] = [v.to_dict() for v in self.validity]
        d["paper_validity"] = [v.to_dict() for v in self.paper_validity]
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), default=float, **kw)


@dataclass(frozen=True)
class MemoryLengths(_Json):
    """Length-aware memory predictions (KV tokens) for one (N, k, length law), beside the
    paper's (``paper_*``, from ``theory.memory`` with p = 1/mean(L) and mu_L = mean input).
    ``E_supY``/``E_Xmax`` come from the model's cycle sampler (``se_supY`` its Monte Carlo
    standard error); ``E_X0`` is exact under the model."""
    N: int
    k: int
    theta: float
    E_X0: float
    E_Xmax: float
    E_supY: float
    se_supY: float
    E_T: float
    E_K: float
    paper_E_X0: float
    paper_kappa: float
    paper_E_Xmax: float
    source: str
    iterations: int
    validity: tuple
    paper_validity: tuple


#: exact cycle transitions applied to the cohort law for E[sup Y] (``sample_cycles_cohorts``)
COHORT_TRANSITIONS = 2


def memory_model_lengths(N, k, input_lens=None, output_lens=None, *, p=None, mu_L=None, var_L=0.0,
                         law: LengthLaw | None = None, seed: int = 0, cycles: int | None = None,
                         stat: Stationary | None = None) -> MemoryLengths:
    """E[X0], E[Xmax], E[sup Y] under exclusive batching with N slots and refill size k for paired
    (input, output) samples (``input_lens[i]``, ``output_lens[i]`` one request), or Geometric(p)
    outputs independent of inputs with mean ``mu_L`` (variance ``var_L``); see the module docstring."""
    law = _law(input_lens, output_lens, p, mu_L, var_L, law)
    st = stationary(N, k, law) if stat is None else stat
    X0m = E_X0_lengths(st)
    _, _, supY, _, _ = sample_cycles_cohorts(st, cycles=cycles, seed=seed, transitions=COHORT_TRANSITIONS)
    chains = supY.reshape(COHORT_TRANSITIONS, -1).mean(axis=0)    # one value per sampled chain
    mom = cycle_moments(st)
    pp = 1.0 / law.mean_L
    pm = _paper_mem.memory_model(int(N), int(k), pp, max(law.mu_I, 1e-12), law.var_I)
    E_supY = float(chains.mean())
    return MemoryLengths(int(N), int(k), k / N, X0m, X0m + E_supY, E_supY,
                         float(chains.std(ddof=1) / math.sqrt(chains.size)), mom["E_T"], mom["E_K"] / (1 - law.q1),
                         pm["E_X0"], pm["kappa"], pm["E_Xmax"], law.source, st.iterations,
                         _model_validity(law, st), _paper_checks(N, law))


@dataclass(frozen=True)
class ThroughputLengths(_Json):
    """Length-aware throughput (requests/s) of refill size k: E[completions per cycle] /
    E[cycle time] (renewal-reward), with the parts of the cycle time (seconds), beside the
    paper's ``theory.throughput`` (p = 1/mean(L))."""
    N: int
    k: int
    throughput: float
    E_cycle_s: float
    prefill_s: float
    decode_s: float
    E_T: float
    E_K: float
    paper_throughput: float
    validity: tuple
    paper_validity: tuple


def throughput_lengths(k, N, alpha_p, beta_p, alpha_d, beta_d, input_lens=None, output_lens=None, *, p=None,
                       mu_L=None, law: LengthLaw | None = None, stat: Stationary | None = None) -> ThroughputLengths:
    """Throughput of exclusive batching with refill size k for any length law and any N*p:
    ``E[K] / (alpha_p + beta_p mu_I E[K] + alpha_d E[T] + beta_d E[sum_steps batch])`` with the
    decode-phase moments of ``cycle_moments`` (several completions per step included). Requests
    with L = 1 add completions and prefill tokens (E[K] is divided by 1 - P(L=1))."""
    law = _law(input_lens, output_lens, p, mu_L, 0.0, law)
    st = stationary(N, k, law) if stat is None else stat
    mom = cycle_moments(st)
    K = mom["E_K"] / (1.0 - law.q1)
    pre = alpha_p + beta_p * law.mu_I * K
    dec = alpha_d * mom["E_T"] + beta_d * mom["E_batch_steps"]
    pp = 1.0 / law.mean_L
    paper = float(_paper_timing.throughput(int(k), int(N), pp, alpha_p, beta_p, alpha_d, beta_d, law.mu_I))
    return ThroughputLengths(int(N), int(k), K / (pre + dec), pre + dec, pre, dec, mom["E_T"], K, paper,
                             _model_validity(law, st), _paper_checks(N, law))


@dataclass(frozen=True)
class KStarLengths(_Json):
    """``k`` = argmax over k = 1..N-1 of the length-aware throughput (``curve[k-1]``), beside
    the paper's k* (``paper_k``, its fallback flag) and the length-aware throughput at it."""
    N: int
    k: int
    throughput: float
    curve: tuple
    paper_k: int
    paper_fallback_used: bool
    throughput_at_paper_k: float
    validity: tuple
    paper_validity: tuple


def k_star_lengths(N, alpha_p, beta_p, alpha_d, beta_d, input_lens=None, output_lens=None, *, p=None, mu_L=None,
                   law: LengthLaw | None = None) -> KStarLengths:
    """Length-aware optimal refill size: the k in 1..N-1 maximising ``throughput_lengths``
    (each k's fixed point warm-starts from k-1's)."""
    law = _law(input_lens, output_lens, p, mu_L, 0.0, law)
    curve, st = [], None
    for k in range(1, int(N)):
        st = stationary(N, k, law, init=st)
        curve.append(throughput_lengths(k, N, alpha_p, beta_p, alpha_d, beta_d, law=law, stat=st).throughput)
    kb = int(np.argmax(curve)) + 1
    pk = _paper_timing.k_star(int(N), 1.0 / law.mean_L, alpha_p, alpha_d, beta_d, beta_p, law.mu_I)
    st_b = stationary(N, kb, law)
    return KStarLengths(int(N), kb, float(curve[kb - 1]), tuple(float(c) for c in curve), int(pk.k),
                        bool(pk.fallback_used), float(curve[pk.k - 1]) if pk.k < N else float("nan"),
                        _model_validity(law, st_b), _paper_checks(N, law))
