"""Memory of exclusive batching in KV tokens: D(theta), E[X0], kappa, drift/variance, the OOM
bound and the memory-safe batch (paper, Sec. memory; seed 000's (1-theta)^2 misprint kept only
under its own name)."""
from __future__ import annotations

import numpy as np

from ._validate import (
    _check_eps,
    _check_N,
    _check_nonneg,
    _check_p,
    _check_pos,
    _check_theta,
    _finite,
    _int_count,
    _out,
)

# --------------------------------------------------------------------------- memory (KV tokens)


def D(theta, p, mu_L):
    """Mean KV tokens per slot at the start of a decode phase (paper, Prop. 2):
    ``D(theta) = mu_L + (1-theta)/(theta*p) * ln(1/(1-theta))`` (vectorized).
    The (1-theta) factor is the authors' code and matches Monte Carlo within 2%;
    seed 000's printed (1-theta)**2 is wrong (see ``D_seed000_misprint``)."""
    theta = _check_theta(theta)
    p = _check_p(p)
    mu_L = _check_nonneg("mu_L", mu_L)
    return _out(mu_L + (1 - theta) / (theta * p) * np.log(1 / (1 - theta)))


def D_seed000_misprint(theta, p, mu_L):
    """Seed document 000's *misprinted* D with (1-theta)**2 — kept only to show the error."""
    theta = _check_theta(theta)
    p = _check_p(p)
    mu_L = _check_nonneg("mu_L", mu_L)
    return _out(mu_L + (1 - theta) ** 2 / (theta * p) * np.log(1 / (1 - theta)))


def E_X0(N, theta, p, mu_L):
    """Expected KV tokens at the start of a decode phase: ``E[X0] = N*D(theta)`` (Prop. 2)."""
    return _out(_check_N(N) * np.asarray(D(theta, p, mu_L)))


def E_X0_seed000_misprint(N, theta, p, mu_L):
    """``N*D`` with seed 000's misprinted (1-theta)**2 — for the formula audit only."""
    return _out(_check_N(N) * np.asarray(D_seed000_misprint(theta, p, mu_L)))


def kappa(p, mu_L):
    """Expected overshoot of the KV peak above X0: ``kappa = nu = 1/(p^2*mu_L)`` (paper, Prop. 3)."""
    p = _check_p(p)
    mu_L = _check_pos("mu_L", mu_L)
    return _out(1.0 / (p ** 2 * mu_L))


nu = kappa


def E_Xmax(N, theta, p, mu_L):
    """Expected per-cycle KV peak: ``E[Xmax] ~ E[X0] + kappa`` (paper, Prop. 3)."""
    return _out(np.asarray(E_X0(N, theta, p, mu_L)) + np.asarray(kappa(p, mu_L)))


def drift(N, p, mu_L):
    """Per-step drift of Y_t = X_t - X0 in the random-walk approximation: ``d_N = -N*p*mu_L``."""
    return _out(-_check_N(N) * _check_p(p) * _check_nonneg("mu_L", mu_L))


def variance(N, p, mu_L, var_L=0.0):
    """Per-step variance: ``v_N = N*p*Var_S + N*p*(1-p)*E_S^2`` with ``E_S = mu_L + 1/p``,
    ``Var_S = Var_L + (1-p)/p^2`` (S = a request's KV footprint at completion)."""
    N = _check_N(N)
    p = _check_p(p)
    mu_L = _check_nonneg("mu_L", mu_L)
    var_L = _check_nonneg("var_L", var_L)
    E_S = mu_L + 1 / p
    Var_S = var_L + (1 - p) / p ** 2
    return _out(N * p * Var_S + N * p * (1 - p) * E_S ** 2)


def variance_approx(N, p):
    """``v_N ~ 2N/p`` when mu_L << 1/p."""
    return _out(2 * _check_N(N) / _check_p(p))


def oom_bound(x, d, v):
    """Exponential (Lundberg-type) bound ``P(sup_t Y_t > x) <= exp(-2|d|x/v)`` (vectorized in x)."""
    x = _check_nonneg("x", x)
    d = _finite("d", d)
    v = _check_pos("v", v)
    return _out(np.exp(-2 * np.abs(d) * x / v))


def N_star_prop3(C, theta, p, mu_L, eps):
    """Memory-safe batch (paper, Prop. 3 corollary): ``N* = floor((C - nu*ln(1/eps)) / D(theta))``,
    C = KV token capacity; 0 when the headroom alone exceeds C."""
    C = _check_nonneg("C", C)
    eps = _check_eps(eps)
    n = np.floor((C - np.asarray(kappa(p, mu_L)) * -np.log(eps)) / np.asarray(D(theta, p, mu_L)))
    return _out(_int_count("N*", np.maximum(n, 0)))


def sigma_S(p, var_L=0.0):
    """Std of one request's KV footprint S = L_in + Geometric(p) output: ``sqrt(Var_L + (1-p)/p^2)``."""
    p = _check_p(p)
    return _out(np.sqrt(_check_nonneg("var_L", var_L) + (1 - p) / p ** 2))


def N_star_clt(C, theta, p, mu_L, eps, var_L=0.0):
    """Largest N with ``N*D + sigma*sqrt(N*ln(1/eps)) <= C`` (CLT form; sigma = ``sigma_S``).
    Solved as a quadratic in u = sqrt(N): D*u^2 + sigma*sqrt(ln(1/eps))*u - C = 0."""
    C = _check_nonneg("C", C)
    eps = _check_eps(eps)
    Dv = np.asarray(D(theta, p, mu_L), dtype=float)
    b = np.asarray(sigma_S(p, var_L)) * np.sqrt(-np.log(eps))
    u = (-b + np.sqrt(b * b + 4 * Dv * C)) / (2 * Dv)
    n = np.floor(u * u)
    # guard against rounding at the boundary (either side)
    n = np.where(n * Dv + b * np.sqrt(n) > C, n - 1, n)
    n = np.where((n + 1) * Dv + b * np.sqrt(n + 1) <= C, n + 1, n)
    return _out(_int_count("N* (CLT)", np.maximum(n, 0)))

def memory_model(N, k, p, mu_L, var_L=0.0) -> dict:
    """Every memory prediction for one (N, k, p, mu_L, Var_L) setting, as plain floats:
    ``theta``, ``D``, ``E_X0`` (and seed 000's misprint), ``kappa``, ``E_Xmax``, ``drift``,
    ``variance``, ``variance_approx`` and ``oom_bound_at_kappa`` = exp(-2|d|kappa/v)."""
    N = int(_check_N(N))
    if not isinstance(k, (int, np.integer)) or not 1 <= k < N:
        raise ValueError(f"k must be an integer in 1..N-1 = 1..{N - 1} (theta = k/N < 1), got {k!r}")
    theta = k / N
    d, v, kap = float(drift(N, p, mu_L)), float(variance(N, p, mu_L, var_L)), float(kappa(p, mu_L))
    return {"theta": theta, "D": float(D(theta, p, mu_L)), "E_X0": float(E_X0(N, theta, p, mu_L)),
            "E_X0_seed000_misprint": float(E_X0_seed000_misprint(N, theta, p, mu_L)),
            "kappa": kap, "E_Xmax": float(E_Xmax(N, theta, p, mu_L)), "drift": d, "variance": v,
            "variance_approx": float(variance_approx(N, p)), "oom_bound_at_kappa": float(oom_bound(kap, d, v))}
