"""Exclusive-batching policies, shared by the simulator and every engine.

A policy says how many requests a refill admits (``k``) and learns from
completions (online p). ``ExclusiveBatching`` turns a policy into the step-level
decision every engine executes, so the sim, native and vLLM runners cannot
disagree on the schedule:

* phase 0: prefill up to N waiting requests;
* phase 1: decode the active batch until at least k slots are free;
* phase 2: one prefill-only step admitting the free slots (k, or more when
  several requests finished in the same decode step), then back to phase 1.
  When the queue is shorter than the free slots, it admits what is left; when
  the queue is empty the batch drains.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import theory


def _check_N_k(N: int, k: int) -> None:
    if not isinstance(N, (int,)) or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N!r}")
    if not isinstance(k, int) or not 1 <= k <= N:
        raise ValueError(f"k must be an integer in 1..N={N}, got {k!r}")


@dataclass
class FixedK:
    """Refill after exactly ``k`` completions (the paper's fixed-threshold policy)."""
    N: int
    k: int
    name: str = "fixed"

    def __post_init__(self):
        _check_N_k(self.N, self.k)

    def observe_completion(self, output_len: int) -> None:
        pass

    def describe(self) -> dict:
        return {"policy": self.name, "N": self.N, "k": self.k}


#: Online estimators of p for ``DynamicKStar``; the first is the default.
ESTIMATORS = ("inverse_mean", "paper")
DEFAULT_ESTIMATOR = ESTIMATORS[0]


@dataclass
class DynamicKStar:
    """k* recomputed from an online estimate of p (paper Sec. "online estimation").

    ``estimator="inverse_mean"`` (the default): ``m <- a*L + (1-a)*m``, ``p = 1/m`` on every
    completion with output length L (``theory.p_ema_inverse_mean``): 1/EMA(L) tracks 1/E[L] = p,
    the offline estimate. ``estimator="paper"``: the paper's rule ``p <- a*(1/L) + (1-a)*p``
    (``theory.p_ema``), kept under its own name; it tracks E[1/L] != 1/E[L] (for Geometric(p)
    outputs p*ln(1/p)/(1-p), 6.2p at p = 0.002), so its k* drifts away from the offline k*.
    Every ``update_interval`` completions k is set to ``theory.k_star(N, p, timing)``.
    ``p0`` is the offline estimate (``theory.p_offline`` over a sample).
    ``history`` keeps (completions, p, k) at every update for convergence plots.
    """
    N: int
    timing: theory.TimingModel
    p0: float
    ema_alpha: float = 0.05
    update_interval: int = 32
    mu_L: float = 0.0
    estimator: str = DEFAULT_ESTIMATOR
    name: str = "dynamic"
    p: float = field(init=False)
    k: int = field(init=False)
    fallback_used: bool = field(init=False, default=False)
    completions: int = field(init=False, default=0)
    history: list = field(init=False, default_factory=list)

    def __post_init__(self):
        theory._check_p(self.p0)
        if not 0 < self.ema_alpha <= 1:
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha!r}")
        if self.update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {self.update_interval!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, "
                             f"got {self.estimator!r}")
        self.p = float(self.p0)
        self._mean_L = 1.0 / self.p
        self._recompute()

    def _recompute(self) -> None:
        res = theory.k_star(self.N, self.p, **self.timing.as_kwargs(), mu_L=self.mu_L)
        self.k, self.fallback_used = int(res.k), bool(res.fallback_used)
        self.history.append((self.completions, self.p, self.k))

    def observe_completion(self, output_len: int) -> None:
        # Same arithmetic as theory.p_ema / theory.p_ema_inverse_mean, inlined: this runs on
        # every completion (inputs were validated in __post_init__).
        L, a = float(max(int(output_len), 1)), self.ema_alpha
        if self.estimator == "paper":
            self.p = a / L + (1 - a) * self.p
        else:
            self._mean_L = a * L + (1 - a) * self._mean_L
            self.p = 1.0 / self._mean_L
        self.completions += 1
        if self.completions % self.update_interval == 0:
            self._recompute()

    def describe(self) -> dict:
        return {"policy": self.name, "N": self.N, "k": self.k, "p": self.p, "p0": self.p0,
                "ema_alpha": self.ema_alpha, "update_interval": self.update_interval,
                "estimator": self.estimator, "fallback_used": self.fallback_used}


class ExclusiveBatching:
    """Step-level decisions for exclusive batching under a policy.

    ``next_action(num_active, num_waiting)`` returns ``("prefill", n)`` to admit
    ``n`` waiting requests in one prefill-only step, ``("decode", num_active)``
    for a decode-only step, or ``("done", 0)``.
    """

    def __init__(self, policy):
        self.policy = policy
        self.started = False

    @property
    def N(self) -> int:
        return self.policy.N

    @property
    def k(self) -> int:
        return self.policy.k

    def next_action(self, num_active: int, num_waiting: int) -> tuple[str, int]:
        N = self.policy.N
        free = N - num_active
        if num_waiting > 0 and (not self.started or free >= self.policy.k or num_active == 0):
            self.started = True
            return "prefill", min(free, num_waiting)
        if num_active > 0:
            return "decode", num_active
        return "done", 0

    def on_finished(self, output_lens) -> None:
        for L in output_lens:
            self.policy.observe_completion(L)


def make_policy(spec: dict, *, timing=None, mu_L: float = 0.0):
    """Build a policy from a params dict: ``{"policy": "fixed", "N": 64, "k": 12}`` or
    ``{"policy": "dynamic", "N": 64, "p0": 0.01, "ema_alpha": 0.05, "update_interval": 32}``
    (``"estimator"``: ``"inverse_mean"``, the default, or ``"paper"``; see ``DynamicKStar``)."""
    kind = spec.get("policy", "fixed")
    if kind == "fixed":
        return FixedK(int(spec["N"]), int(spec["k"]))
    if kind == "dynamic":
        if timing is None:
            raise ValueError("a dynamic policy needs a fitted timing model (alpha_p, beta_p, alpha_d, beta_d)")
        return DynamicKStar(int(spec["N"]), timing, float(spec["p0"]),
                            ema_alpha=float(spec.get("ema_alpha", 0.05)),
                            update_interval=int(spec.get("update_interval", 32)), mu_L=mu_L,
                            estimator=spec.get("estimator", DEFAULT_ESTIMATOR))
    raise ValueError(f"policy must be 'fixed' or 'dynamic', got {kind!r}")
