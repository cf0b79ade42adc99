"""Argument checks shared by the theory modules (clear ValueErrors naming the argument)."""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- validation

# Largest slot count N for the functions that allocate O(N) arrays (k_star, throughput):
# 10^6 slots is far above any real batch and keeps every array under 8 MB.
N_MAX = 10**6


def _finite(name, x, allowed="a number (not NaN)"):
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {x!r}") from None
    if np.any(np.isnan(a)):
        raise ValueError(f"{name} must be {allowed}, got NaN")
    return a


def _check_p(p, name="p"):
    a = _finite(name, p, "in (0, 1]")
    if np.any((a <= 0) | (a > 1)):
        raise ValueError(f"{name} must be in (0, 1], got {p!r}")
    return a


def _check_nonneg(name, x):
    a = _finite(name, x, "finite and >= 0")
    if np.any(a < 0) or np.any(np.isinf(a)):
        raise ValueError(f"{name} must be finite and >= 0, got {x!r}")
    return a


def _check_pos(name, x):
    a = _finite(name, x, "finite and > 0")
    if np.any(a <= 0) or np.any(np.isinf(a)):
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return a


def _check_N(N, name="N"):
    a = _finite(name, N, "an integer >= 1")
    if np.any(a < 1) or np.any(a != np.floor(a)) or np.any(np.isinf(a)):
        raise ValueError(f"{name} must be an integer >= 1, got {N!r}")
    return a


def _check_N_alloc(N, name="N") -> int:
    """N as an int in 1..N_MAX, checked before anything of size N is allocated."""
    a = _check_N(N, name)
    if a.ndim or a > N_MAX:
        raise ValueError(f"{name} must be an integer >= 1 and <= {N_MAX} (arrays of size {name} are "
                         f"allocated), got {N!r}")
    return int(a)


def _check_theta(theta):
    a = _finite("theta", theta, "in (0, 1)")
    if np.any((a <= 0) | (a >= 1)):
        raise ValueError(f"theta must be in (0, 1), got {theta!r}")
    return a


def _check_eps(eps):
    a = _finite("eps", eps, "in (0, 1)")
    if np.any((a <= 0) | (a >= 1)):
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    return a


def _int_count(name, n):
    """A count computed in floats (a batch size, N*) as int64; NaN or beyond 2^62 is a ValueError
    (``astype`` would wrap it into a garbage negative number)."""
    n = np.asarray(n, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(np.abs(n) > 2.0**62):
        shown = n.item() if n.ndim == 0 else n[~np.isfinite(n) | (np.abs(n) > 2.0**62)][:3]
        raise ValueError(f"{name} = {shown} is out of range (not finite, or beyond 2^62): the inputs overflow "
                         "floating point")
    return n.astype(np.int64)


def _out(a):
    a = np.asarray(a)
    return a.item() if a.ndim == 0 else a
