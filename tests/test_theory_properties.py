"""Property tests (hypothesis): the invalid-input contract of pdlib.theory and monotonicity."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pdlib import theory as T

NAN = float("nan")
bad_p = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, exclude_min=True),
                  st.just(NAN))
bad_N = st.one_of(st.integers(max_value=0), st.floats(min_value=1.01, max_value=1e6).filter(lambda x: x != int(x)),
                  st.just(NAN), st.just(math.inf))
negative = st.one_of(st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False), st.just(NAN))
good_p = st.floats(min_value=1e-4, max_value=1.0)
SETTINGS = settings(max_examples=60, deadline=None)


def _raises(fn, *names_and_range):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    for part in names_and_range:
        assert part in msg, f"{part!r} not in {msg!r}"


# --------------------------------------------------------------------------- p outside (0, 1]

P_USERS = {
    "tau": lambda p: T.tau(4, p, 0.01, 1e-4),
    "throughput": lambda p: T.throughput(3, 16, p, 0.05, 0, 0.01, 1e-4),
    "k_star": lambda p: T.k_star(16, p, 0.05, 0.01, 1e-4),
    "theta_star": lambda p: T.theta_star(p, 0.05, 0.01),
    "theta_star_exact": lambda p: T.theta_star(p, 0.05, 0.01, exact=True),
    "D": lambda p: T.D(0.2, p, 300),
    "E_X0": lambda p: T.E_X0(64, 0.2, p, 300),
    "kappa": lambda p: T.kappa(p, 300),
    "E_Xmax": lambda p: T.E_Xmax(64, 0.2, p, 300),
    "drift": lambda p: T.drift(64, p, 300),
    "variance": lambda p: T.variance(64, p, 300),
    "variance_approx": lambda p: T.variance_approx(64, p),
    "sigma_S": lambda p: T.sigma_S(p),
    "N_star_prop3": lambda p: T.N_star_prop3(1e5, 0.2, p, 300, 0.01),
    "N_star_clt": lambda p: T.N_star_clt(1e5, 0.2, p, 300, 0.01),
    "p_ema": lambda p: T.p_ema(p, 100, 0.1),
}


@pytest.mark.parametrize("fn", P_USERS.values(), ids=P_USERS.keys())
@SETTINGS
@given(p=bad_p)
def test_p_outside_0_1_raises(fn, p):
    _raises(lambda: fn(p), "p must be in (0, 1]")


# --------------------------------------------------------------------------- N < 1, non-integer, NaN

N_USERS = {
    "throughput": lambda N: T.throughput(1, N, 0.01, 0.05, 0, 0.01, 1e-4),
    "k_star": lambda N: T.k_star(N, 0.01, 0.05, 0.01, 1e-4),
    "E_X0": lambda N: T.E_X0(N, 0.2, 0.01, 300),
    "drift": lambda N: T.drift(N, 0.01, 300),
    "variance": lambda N: T.variance(N, 0.01, 300),
    "variance_approx": lambda N: T.variance_approx(N, 0.01),
}


@pytest.mark.parametrize("fn", N_USERS.values(), ids=N_USERS.keys())
@SETTINGS
@given(N=bad_N)
def test_N_invalid_raises(fn, N):
    _raises(lambda: fn(N), "N must be an integer >= 1")


# --------------------------------------------------------------------------- k outside 1..N


@SETTINGS
@given(N=st.integers(1, 200), k=st.one_of(st.integers(-50, 0), st.integers(201, 10_000), st.just(NAN),
                                          st.floats(0.5, 199.5).filter(lambda x: x != int(x))))
def test_k_outside_1_N_raises(N, k):
    _raises(lambda: T.throughput(k, N, 0.01, 0.05, 0, 0.01, 1e-4), "k must be an integer in 1..N")


# --------------------------------------------------------------------------- negative times / memory / NaN

NONNEG_USERS = {
    "alpha_p": [lambda x: T.k_star(16, 0.01, x, 0.01, 1e-4), lambda x: T.throughput(2, 16, 0.01, x, 0, 0.01, 0),
                lambda x: T.TimingModel(x, 0, 0.01, 0), lambda x: T.theta_star(0.01, x, 0.01)],
    "beta_p": [lambda x: T.throughput(2, 16, 0.01, 0.05, x, 0.01, 0), lambda x: T.TimingModel(0.1, x, 0.01, 0)],
    "alpha_d": [lambda x: T.tau(3, 0.01, x, 0), lambda x: T.k_star(16, 0.01, 0.05, x, 1e-4)],
    "beta_d": [lambda x: T.tau(3, 0.01, 0.01, x), lambda x: T.k_star(16, 0.01, 0.05, 0.01, x)],
    "mu_L": [lambda x: T.D(0.2, 0.01, x), lambda x: T.drift(8, 0.01, x), lambda x: T.throughput(2, 16, 0.01, 0.05, 0, 0.01, 0, x)],
    "var_L": [lambda x: T.variance(8, 0.01, 10, x), lambda x: T.N_star_clt(1e5, 0.2, 0.01, 30, 0.01, x)],
    "M_max": [lambda x: T.eta(x, 0, 1000)],
    "M_model": [lambda x: T.eta(1e9, x, 1000)],
    "C": [lambda x: T.N_star_prop3(x, 0.2, 0.01, 300, 0.01), lambda x: T.N_star_clt(x, 0.2, 0.01, 300, 0.01)],
    "eta": [lambda x: T.L0(x), lambda x: T.b_mem(x, 500)],
    "x": [lambda x: T.oom_bound(x, -10, 100)],
    "a": [lambda x: T.T_latency(4, 100, x, 1e-4, 0.3)],
    "b_": [lambda x: T.T_latency(4, 100, 0.01, x, 0.3)],
    "b_mem": [lambda x: T.b_target(x, 10, 128)],
}
CASES = [(name, f) for name, fs in NONNEG_USERS.items() for f in fs]


@pytest.mark.parametrize("name,fn", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@settings(max_examples=25, deadline=None)
@given(x=negative)
def test_negative_or_nan_times_and_memory_raise(name, fn, x):
    rng = "(0, 1)" if name == "theta" else ">= 0"
    _raises(lambda: fn(x), f"{name} must be", rng)


POSITIVE_USERS = {
    "kv_per_token": lambda x: T.eta(1e9, 1e8, x), "mu": lambda x: T.b_mem(1e5, x),
    "alpha_d": lambda x: T.theta_star(0.01, 0.05, x), "sla_s": lambda x: T.b_SLA(x, 100, 0.01, 1e-4, 0.3),
    "v": lambda x: T.oom_bound(1, -1, x), "L": lambda x: T.p_ema(0.01, x, 0.1),
}


@pytest.mark.parametrize("name,fn", POSITIVE_USERS.items(), ids=POSITIVE_USERS.keys())
@settings(max_examples=25, deadline=None)
@given(x=st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False), st.just(NAN)))
def test_nonpositive_where_positive_required_raises(name, fn, x):
    _raises(lambda: fn(x), f"{name} must be", "> 0")


@SETTINGS
@given(theta=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0), st.just(NAN)))
def test_theta_outside_0_1_raises(theta):
    _raises(lambda: T.D(theta, 0.01, 300), "theta must be in (0, 1)")
    _raises(lambda: T.D_seed000_misprint(theta, 0.01, 300), "theta must be in (0, 1)")
    _raises(lambda: T.N_star_prop3(1e5, theta, 0.01, 300, 0.01), "theta must be in (0, 1)")


@SETTINGS
@given(eps=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0), st.just(NAN)))
def test_eps_outside_0_1_raises(eps):
    _raises(lambda: T.N_star_prop3(1e5, 0.2, 0.01, 300, eps), "eps must be in (0, 1)")
    _raises(lambda: T.N_star_clt(1e5, 0.2, 0.01, 300, eps), "eps must be in (0, 1)")


# --------------------------------------------------------------------------- monotonicity / optimality

timing = {"N": st.integers(3, 160), "p": good_p, "ap": st.floats(1e-4, 5.0), "ad": st.floats(1e-5, 0.5)}


@settings(max_examples=150, deadline=None)
@given(**timing)
def test_k_star_lhs_non_decreasing_when_beta_d_is_zero(N, p, ap, ad):
    lhs = T.k_star(N, p, ap, ad, 0.0).lhs
    assert np.all(np.diff(lhs) >= -1e-9 * max(1.0, np.abs(lhs).max()))


@settings(max_examples=150, deadline=None)
@given(bd=st.floats(1e-7, 0.1), **timing)
def test_k_star_lhs_never_falls_back_below_once_non_negative(N, p, ap, ad, bd):
    """With beta_d > 0 the left side can dip (tau rises at large batch), but only while it is
    negative; from its first non-negative value on it is non-decreasing."""
    lhs = T.k_star(N, p, ap, ad, bd).lhs
    nz = np.nonzero(lhs >= 0)[0]
    if nz.size:
        tail = lhs[nz[0]:]
        assert np.all(np.diff(tail) >= -1e-9 * max(1.0, np.abs(lhs).max()))


@settings(max_examples=150, deadline=None)
@given(bd=st.floats(0.0, 0.1), bp=st.floats(0.0, 1e-3), mu=st.floats(0.0, 4000.0), **timing)
def test_k_star_maximises_the_cycle_throughput(N, p, ap, ad, bd, bp, mu):
    r = T.k_star(N, p, ap, ad, bd, bp, mu)
    f = np.asarray(T.throughput(np.arange(1, N + 1), N, p, ap, bp, ad, bd, mu))
    if r.fallback_used:
        assert int(np.argmax(f)) == N - 1          # the model is then best at k = N
    else:
        assert r.throughput >= f.max() * (1 - 1e-9)


@SETTINGS
@given(p=good_p, r1=st.floats(1e-4, 100.0), r2=st.floats(1e-4, 100.0))
def test_theta_star_increases_with_alpha_p_over_alpha_d(p, r1, r2):
    assume(abs(r1 - r2) > 1e-6 * max(r1, r2))
    lo, hi = sorted((r1, r2))
    assert T.theta_star(p, lo, 1.0) <= T.theta_star(p, hi, 1.0)


@SETTINGS
@given(t1=st.floats(0.01, 0.99), t2=st.floats(0.01, 0.99), p=good_p, mu=st.floats(0.0, 5000.0))
def test_D_decreases_in_theta_and_misprint_is_below(t1, t2, p, mu):
    lo, hi = sorted((t1, t2))
    assert T.D(lo, p, mu) >= T.D(hi, p, mu) - 1e-9 * T.D(hi, p, mu)
    assert T.D_seed000_misprint(lo, p, mu) <= T.D(lo, p, mu)


@SETTINGS
@given(C1=st.floats(0.0, 1e7), C2=st.floats(0.0, 1e7), th=st.floats(0.05, 0.95), p=st.floats(1e-3, 0.5),
       mu=st.floats(1.0, 2000.0))
def test_N_star_non_decreasing_in_capacity(C1, C2, th, p, mu):
    lo, hi = sorted((C1, C2))
    assert T.N_star_prop3(lo, th, p, mu, 0.01) <= T.N_star_prop3(hi, th, p, mu, 0.01)
    assert T.N_star_clt(lo, th, p, mu, 0.01) <= T.N_star_clt(hi, th, p, mu, 0.01)
