"""Binomial order statistics of the length-aware model (``pdlib.theory.lengths``): the k-th
smallest of n i.i.d. remaining lives, through the regularized incomplete beta function."""
from __future__ import annotations

import math

import numpy as np


def _betacf(a, b, x, maxit):
    """Continued fraction of the incomplete beta function (modified Lentz), vectorized in x."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    for m in range(1, maxit + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        de = d * c
        h *= de
        if np.all(np.abs(de - 1.0) < 1e-15):
            break
    return h


def _kl(a, q):
    """Bernoulli KL divergence KL(a || q) (Chernoff exponent), vectorized in q."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * np.log(a / q), 0.0)
        t2 = np.where(a < 1, (1 - a) * np.log((1 - a) / (1 - q)), 0.0)
    return t1 + t2


def binom_sf(n: int, k: int, q):
    """``P(Bin(n, q) >= k)`` = I_q(k, n-k+1) (regularized incomplete beta), vectorized in q.
    Saturated points (Chernoff bound below 1e-17) are set to 0/1 without the continued
    fraction. Used for the k-th order statistic of n i.i.d. remaining lives."""
    q = np.clip(np.asarray(q, dtype=float), 0.0, 1.0)
    if k <= 0:
        return np.ones_like(q)
    if k > n:
        return np.zeros_like(q)
    out = np.where(q >= 1.0, 1.0, 0.0)
    a, b = float(k), float(n - k + 1)
    inner = (q > 0) & (q < 1)
    lo = inner & (q < k / n) & (n * _kl(k / n, np.clip(q, 1e-300, 1 - 1e-16)) > 40)
    hi = inner & (q > (k - 1) / n) & (n * _kl((k - 1) / n, np.clip(q, 1e-300, 1 - 1e-16)) > 40)
    out[hi] = 1.0
    mid = inner & ~lo & ~hi
    if mid.any():
        x = q[mid]
        lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        front = np.exp(lbeta + a * np.log(x) + b * np.log1p(-x))
        maxit = int(20 + 12 * math.sqrt(max(a, b)))
        sw = x < (a + 1) / (a + b + 2)
        res = np.empty_like(x)
        if sw.any():
            res[sw] = front[sw] * _betacf(a, b, x[sw], maxit) / a
        if (~sw).any():
            res[~sw] = 1.0 - front[~sw] * _betacf(b, a, 1.0 - x[~sw], maxit) / b
        out[mid] = np.clip(res, 0.0, 1.0)
    return out
