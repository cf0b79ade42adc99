"""The simulator's fast core: the request stream and the completion-to-completion event loop.

Between two steps in which a request finishes nothing can change the policy's decision, so
``event_loop`` runs once per *completion step* (a heap keyed by finishing step); what it
returns -- when each prefill ran and how many it admitted -- is all ``columns.build_columns``
needs to rebuild every per-step column.
"""

from __future__ import annotations

import heapq

import numpy as np

from .. import theory
from ..policy import ExclusiveBatching, FixedK
from .samplers import InOrder, Sampler

#: Default timing model (seconds) when none is given: the balanced regime of
#: ``params/engines/sim.yaml`` -- prefill 20 ms + 20 us/token, decode 8 ms + 0.1 ms/request.
DEFAULT_TIMING = theory.TimingModel(alpha_p=0.02, beta_p=2e-5, alpha_d=0.008, beta_d=1e-4)

_CHUNK = 16384  # requests drawn per chunk: same prefix for every run with one seed (CRN)
_SH = 32  # heap key = finish_step << 32 | request index
_MASK = (1 << _SH) - 1
NO_LIMIT = 1 << 62


def as_policy(N: int, policy_or_k):
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


class Stream:
    """Lazily drawn (input, output) lengths in fixed chunks, so request i has the same
    lengths in every run with one seed however many requests a run consumes.
    ``paired``: both samplers are ``Empirical`` over the same pairs; one index per request is
    drawn (from the output stream's generator, so the outputs are those an unpaired run with
    the same seed draws) and picks the input and the output of the same pair."""

    def __init__(self, inp: Sampler, out: Sampler, seed: int, limit: int | None, max_tokens, paired: bool = False):
        self.inp, self.out, self.max_tokens, self.paired = inp, out, max_tokens, paired
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
            if self.paired:  # one index per request into both arrays (the output stream is the
                idx = self.rng_out.integers(0, self.out.values.size, size=_CHUNK)  # same as unpaired)
                i_, o_ = self.inp.values[idx], self.out.values[idx]
            else:
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



def event_loop(eb: ExclusiveBatching, stream: Stream, steps_limit: int):
    """Run the policy from completion step to completion step.

    Returns (pf_clock, pf_n, D_end, k_changes) where prefill j ran after ``pf_clock[j]``
    decode steps and admitted ``pf_n[j]`` requests (in queue order), ``D_end`` is the
    number of decode steps run, and ``k_changes`` lists (global step, new k) after
    which the policy's k changed."""
    pol = eb.policy
    feedback = not isinstance(pol, FixedK)
    R = NO_LIMIT if stream.size is None else stream.size
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
