"""Validity flags: the assumptions each formula needs and whether given inputs satisfy them.

Every result of ``lengths.memory_model_lengths`` / ``lengths.throughput_lengths`` carries a
tuple of ``Validity`` records, for the paper's formulas (quoted beside the length-aware ones)
and for the length-aware model itself. Thresholds (stated here, the one place):

* ``one_completion_per_step`` (tau, throughput, k*): ``N*p <= 0.1``. tau(j) counts one
  completion per step; at batch N, P(>= 2 | >= 1) ~ (N-1)p/2, so N*p = 0.1 costs ~5 %.
* ``short_inputs`` (kappa = 1/(p^2 mu_L), variance_approx = 2N/p): ``p*mu_L <= 0.1``
  (mu_L << 1/p).
* ``geometric_outputs`` (D, E[X0], kappa, tau): Kolmogorov-Smirnov distance between the
  outputs' empirical cdf and Geometric(1/mean) ``<= max(0.05, 1.36/sqrt(n))`` (a practical
  tolerance of 5 points of cdf, or the 5 % critical value for small samples).
* ``inputs_independent`` (D uses mu_L of all requests): ``|Spearman rho(input, output)| <= 0.1``.
* length-aware model: ``fixed_point_converged`` (sup |dF| <= 1e-6), ``few_single_token``
  (P(L = 1) <= 0.05: such requests are taken to be replaced at once), ``enough_pairs``
  (>= 100 pairs; the model treats the sample as the population).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

KS_TOL = 0.05
NP_MAX = 0.1
PMU_MAX = 0.1
RHO_MAX = 0.1


@dataclass(frozen=True)
class Validity:
    """One assumption: ``holds`` = whether ``value`` is within ``threshold``; ``why`` says
    which formula needs it and what breaks otherwise."""
    name: str
    holds: bool
    value: float
    threshold: float
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def ks_geometric(output_lens) -> float:
    """Kolmogorov-Smirnov distance sup_x |F_n(x) - F_geo(x)| between the empirical cdf of the
    outputs and Geometric(p = 1/mean) on {1, 2, ...}."""
    L = np.asarray(output_lens, dtype=np.int64).ravel()
    p = 1.0 / L.mean()
    x = np.unique(L)
    Fn_hi = np.searchsorted(np.sort(L), x, side="right") / L.size          # F_n(x)
    Fn_lo = np.searchsorted(np.sort(L), x, side="left") / L.size           # F_n(x-)
    Fg_hi = -np.expm1(x * np.log1p(-p)) if p < 1 else np.ones_like(x, float)
    Fg_lo = -np.expm1((x - 1) * np.log1p(-p)) if p < 1 else np.zeros_like(x, float)
    return float(max(np.max(np.abs(Fn_hi - Fg_hi)), np.max(np.abs(Fn_lo - Fg_lo))))


def _ranks(x):
    """Average ranks (ties share their mean rank)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    _, first, counts = np.unique(xs, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    r = np.empty(x.size)
    r[order] = np.repeat(avg, counts)
    return r


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either is constant."""
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def paper_validity(N, p, mu_L, input_lens=None, output_lens=None) -> tuple[Validity, ...]:
    """The paper's assumptions for (N, p, mu_L) and, when given, the paired samples."""
    out = [
        Validity("one_completion_per_step", bool(N * p <= NP_MAX), float(N * p), NP_MAX,
                 "tau(j), throughput and k* count at most one completion per decode step; N*p "
                 "is the mean completions per step at batch N"),
        Validity("short_inputs", bool(p * mu_L <= PMU_MAX), float(p * mu_L), PMU_MAX,
                 "kappa = 1/(p^2 mu_L) and variance_approx = 2N/p need mu_L << 1/p (p*mu_L small)"),
    ]
    if output_lens is not None:
        L = np.asarray(output_lens)
        tol = max(KS_TOL, 1.36 / np.sqrt(L.size))
        ks = ks_geometric(L)
        out.append(Validity("geometric_outputs", bool(ks <= tol), ks, float(tol),
                            "D(theta), E[X0], kappa and tau assume Geometric(p) outputs; KS distance to "
                            "Geometric(1/mean)"))
    if input_lens is not None and output_lens is not None:
        rho = spearman(input_lens, output_lens)
        out.append(Validity("inputs_independent", bool(not np.isfinite(rho) or abs(rho) <= RHO_MAX),
                            rho, RHO_MAX,
                            "D(theta) adds mu_L of all requests; the survivors' inputs differ when input "
                            "and output lengths are correlated (Spearman rho)"))
    return tuple(out)
