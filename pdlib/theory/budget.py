"""Seed 004's GPU-budget heuristic: eta, L0, b_mem, b_target and the latency model T(b, L)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import _check_N, _check_nonneg, _check_pos, _finite, _int_count, _out

# --------------------------------------------------------------------------- seed 004: GPU budget


def eta(M_max, M_model, kv_per_token):
    """KV token capacity of a GPU (seed 004): ``eta = (M_max - M_model) / kv_per_token``
    (bytes / bytes-per-token). Negative free memory is an error."""
    M_max = _check_nonneg("M_max", M_max)
    M_model = _check_nonneg("M_model", M_model)
    kv = _check_pos("kv_per_token", kv_per_token)
    if np.any(M_model > M_max):
        raise ValueError(f"M_model ({M_model}) exceeds M_max ({M_max}): the model does not fit")
    return _out((M_max - M_model) / kv)


def L0(eta_):
    """Seed 004's reserved headroom: ``L0 = 0.1*eta``."""
    return _out(0.1 * _check_nonneg("eta", eta_))


def b_mem(eta_, mu):
    """Seed 004's memory-bound batch: ``b_mem = floor((eta - L0)/mu)``, mu = tokens per request."""
    eta_ = _check_nonneg("eta", eta_)
    mu = _check_pos("mu", mu)
    return _out(_int_count("b_mem", np.floor((eta_ - 0.1 * eta_) / mu)))


def b_target(b_mem_, b_sla, B_MAX):
    """Seed 004: ``b_target = min(b_mem, b_SLA, B_MAX)``."""
    _check_nonneg("b_mem", b_mem_)
    _check_nonneg("b_SLA", b_sla)
    _check_pos("B_MAX", B_MAX)
    return _out(np.minimum(np.minimum(np.asarray(b_mem_), np.asarray(b_sla)), np.asarray(B_MAX)))


def T_latency(b, L, a, b_, g):
    """Seed 004's latency model ``T(b, L) = a + b_*L*(1 + g*(b-1)/b)`` (vectorized)."""
    b = _check_pos("b", b)
    L = _check_nonneg("L", L)
    a = _check_nonneg("a", a)
    b_ = _check_nonneg("b_", b_)
    g = _finite("g", g)
    return _out(a + b_ * L * (1 + g * (b - 1) / b))


@dataclass(frozen=True)
class LatencyFit:
    a: float
    b_: float
    g: float
    r2: float
    residuals: np.ndarray

    def __call__(self, b, L):
        return T_latency(b, L, self.a, self.b_, self.g)


def fit_T_latency(b, L, T) -> LatencyFit:
    """Least-squares fit of seed 004's ``T(b, L)``: linear in (a, b_, b_*g), so solved exactly
    with regressors [1, L, L*(b-1)/b]. A negative a or b_ from noise is clipped to 0 (as in
    ``fit_timing``); g and R^2 are those of the unclipped fit."""
    b = _check_pos("b", b).ravel()
    L = _check_nonneg("L", L).ravel()
    T = _finite("T", T).ravel()
    if not (b.size == L.size == T.size) or b.size < 3:
        raise ValueError("b, L, T must have equal length >= 3")
    A = np.column_stack([np.ones_like(L), L, L * (b - 1) / b])
    (a, b1, bg), *_ = np.linalg.lstsq(A, T, rcond=None)
    resid = T - A @ np.array([a, b1, bg])
    ss = float(np.sum((T - T.mean()) ** 2))
    g = bg / b1 if b1 != 0 else 0.0
    return LatencyFit(max(float(a), 0.0), max(float(b1), 0.0), float(g), 1 - float(np.sum(resid ** 2)) / ss if ss > 0 else 1.0, resid)


def b_SLA(sla_s, L, a, b_, g, B_MAX=1024):
    """Largest batch b in 1..B_MAX with ``T(b, L) <= sla_s`` (0 if even b=1 misses the SLA)."""
    _check_pos("sla_s", sla_s)
    if int(_check_N(B_MAX, "B_MAX")) > 10**7:
        raise ValueError(f"B_MAX must be an integer in 1..10^7, got {B_MAX!r}")
    bs = np.arange(1, int(B_MAX) + 1)
    ok = np.asarray(T_latency(bs, L, a, b_, g)) <= sla_s
    return int(bs[ok].max()) if ok.any() else 0
