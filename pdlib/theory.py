"""Theory of exclusive batching (pure functions; imports nothing else of pdlib).

Source: Zhang, Nie, Pang, Ma, Wu, "Threshold-Based Exclusive Batching for
Memory-Bandwidth-Constrained LLM Inference", ICML 2026, arXiv:2606.00516, and the
project's design brief (../shared/DESIGN.md, "Theory"), which lists two errors in
the seed documents that are *not* reproduced here:

* seed 000 prints D(theta) with (1-theta)**2; the correct factor is (1-theta)
  (``D``); the misprint survives only as ``D_seed000_misprint``.
* seed 004 sizes the KV cache of Qwen3-1.7B with hidden_size and 24 layers
  (196,608 B/token); the model has 28 layers, 8 KV heads of 128: 114,688 B/token
  (``kv_bytes_per_token``).

Notation: N slots, refill size k, theta = k/N, termination probability p per
decode step (outputs ~ Geometric(p), mean 1/p), mu_L = mean input length
(tokens), timing model: prefill of T tokens ``alpha_p + beta_p*T``, decode step
with batch j ``alpha_d + beta_d*j`` (seconds).
Every function accepts numpy arrays where it says "vectorized".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------- validation


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


def _out(a):
    a = np.asarray(a)
    return a.item() if a.ndim == 0 else a

# --------------------------------------------------------------------------- timing model


@dataclass(frozen=True)
class LinearFit:
    """Least-squares fit y = intercept + slope*x with R^2 and residuals (y - y_hat)."""
    intercept: float
    slope: float
    r2: float
    residuals: np.ndarray
    n: int

    def predict(self, x):
        return self.intercept + self.slope * np.asarray(x, dtype=float)


def fit_linear(x, y) -> LinearFit:
    """Ordinary least squares for the two-term timing models (paper Sec. 3, eqs. for
    prefill ``alpha_p + beta_p*T`` and decode ``alpha_d + beta_d*j``)."""
    x = _finite("x", x).ravel()
    y = _finite("y", y).ravel()
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a linear fit needs at least two distinct x values")
    A = np.column_stack([np.ones_like(x), x])
    (b0, b1), *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - (b0 + b1 * x)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return LinearFit(float(b0), float(b1), r2, resid, int(x.size))


@dataclass(frozen=True)
class TimingModel:
    """Fitted step-time model (seconds): prefill ``alpha_p + beta_p*T``, decode ``alpha_d + beta_d*j``."""
    alpha_p: float
    beta_p: float
    alpha_d: float
    beta_d: float
    r2_prefill: float = float("nan")
    r2_decode: float = float("nan")

    def __post_init__(self):
        for name in ("alpha_p", "beta_p", "alpha_d", "beta_d"):
            _check_nonneg(name, getattr(self, name))

    def as_kwargs(self) -> dict:
        return {"alpha_p": self.alpha_p, "beta_p": self.beta_p,
                "alpha_d": self.alpha_d, "beta_d": self.beta_d}

    def prefill_time(self, tokens):
        return self.alpha_p + self.beta_p * np.asarray(tokens, dtype=float)

    def decode_time(self, batch):
        return self.alpha_d + self.beta_d * np.asarray(batch, dtype=float)


def fit_timing(prefill_tokens, prefill_s, decode_batch, decode_s) -> TimingModel:
    """Fit both linear models by least squares; negative intercepts/slopes from noise
    are clipped to 0 (reported R^2 is that of the unclipped fit)."""
    fp = fit_linear(prefill_tokens, prefill_s)
    fd = fit_linear(decode_batch, decode_s)
    return TimingModel(max(fp.intercept, 0.0), max(fp.slope, 0.0),
                       max(fd.intercept, 0.0), max(fd.slope, 0.0), fp.r2, fd.r2)

# --------------------------------------------------------------------------- throughput / k*


def tau(j, p, alpha_d, beta_d):
    """Expected time per completion while decoding batch j (vectorized):
    ``tau(j) = (alpha_d + beta_d*j) / (1 - (1-p)**j)`` — a step takes
    alpha_d + beta_d*j and ends at least one request with probability 1-(1-p)^j
    (paper, decode-phase cost, Sec. 4). tau(0) = inf."""
    p = _check_p(p)
    _check_nonneg("alpha_d", alpha_d)
    _check_nonneg("beta_d", beta_d)
    j = _check_nonneg("j", j)
    with np.errstate(divide="ignore"):
        return _out((alpha_d + beta_d * j) / (1.0 - (1.0 - p) ** j))


def _tau_suffix_sums(N, p, alpha_d, beta_d):
    """S[k] = sum_{j=N-k+1..N} tau(j) for k = 0..N."""
    t = np.asarray(tau(np.arange(1, N + 1), p, alpha_d, beta_d), dtype=float)
    return np.concatenate([[0.0], np.cumsum(t[::-1])])


def throughput(k, N, p, alpha_p, beta_p, alpha_d, beta_d, mu_L=0.0):
    """Requests per second of exclusive batching with refill size k (vectorized in k):
    ``k / (alpha_p + beta_p*k*mu_L + sum_{j=N-k+1..N} tau(j))`` (paper, cycle
    throughput: one prefill of k requests plus decoding from batch N down to N-k)."""
    N = int(_check_N(N))
    _check_p(p)
    for name, v in (("alpha_p", alpha_p), ("beta_p", beta_p), ("mu_L", mu_L)):
        _check_nonneg(name, v)
    k = _finite("k", k, f"an integer in 1..N={N}")
    if np.any((k < 1) | (k > N)) or np.any(k != np.floor(k)):
        raise ValueError(f"k must be an integer in 1..N={N}, got {k!r}")
    S = _tau_suffix_sums(N, p, alpha_d, beta_d)
    ki = k.astype(int)
    return _out(ki / (alpha_p + beta_p * ki * mu_L + S[ki]))


@dataclass(frozen=True)
class KStar:
    k: int
    fallback_used: bool
    theta: float
    throughput: float          # requests/s at k (paper's cycle model)
    lhs: np.ndarray            # k*tau(N-k) - sum tau, k = 1..N-1


def k_star(N, p, alpha_p, alpha_d, beta_d, beta_p=0.0, mu_L=0.0) -> KStar:
    """Optimal refill size (paper, Theorem 1): the smallest k in 1..N-1 with
    ``k*tau(N-k) - sum_{j=N-k+1..N} tau(j) >= alpha_p``.

    Derivation: with f(k) = k / (alpha_p + beta_p*k*mu_L + S(k)),
    f(k+1) >= f(k)  <=>  k*tau(N-k) - S(k) <= alpha_p (beta_p*mu_L cancels).
    The left side changes by (k+1)*(tau(N-k-1) - tau(N-k)): it is non-decreasing
    wherever tau falls with the batch (always when beta_d = 0); where tau rises
    (beta_d > 0, large batch) it dips, but only below 0 <= alpha_p, so once it
    reaches alpha_p it stays there and the first such k maximises f.
    The condition at k = N involves tau(0) = inf and always holds, so the search
    stops at N-1; if no k <= N-1 qualifies, f increases up to k = N (static
    batching), yet the authors' code falls back to N//5 (at least 1) — kept for
    fidelity, and ``fallback_used`` says so.
    """
    N = int(_check_N(N))
    _check_p(p)
    _check_nonneg("alpha_p", alpha_p)
    S = _tau_suffix_sums(N, p, alpha_d, beta_d)
    ks = np.arange(1, N)
    lhs = ks * np.asarray(tau(N - ks, p, alpha_d, beta_d), dtype=float) - S[ks] if N > 1 else np.array([])
    hit = np.nonzero(lhs >= alpha_p)[0]
    if hit.size:
        k, fb = int(ks[hit[0]]), False
    else:
        k, fb = max(1, N // 5), True
    thr = float(throughput(k, N, p, alpha_p, beta_p, alpha_d, beta_d, mu_L))
    return KStar(k, fb, k / N, thr, lhs)


def theta_star(p, alpha_p, alpha_d, exact=False):
    """Large-N optimal ratio theta* = k*/N (paper, Corollary: continuum limit), the root of
    ``theta/(1-theta) + ln(1-theta) = c`` with ``c = p*alpha_p/alpha_d`` (CFR form) or
    ``c = -ln(1-p)*alpha_p/alpha_d`` (exact-CFR form). The left side increases from 0 at
    theta = 0 to infinity, so the root is unique (vectorized; solved by bisection).
    The limit takes 1-(1-p)^j ~ p*j for every batch j <= N, i.e. p*N << 1; at p*N >~ 1 the
    exact k*/N departs from it (N=64, p=0.005: 13/64=0.203 vs 0.194; N=4096: 0.69 vs 0.194)."""
    p = _check_p(p)
    alpha_p = _check_nonneg("alpha_p", alpha_p)
    alpha_d = _check_pos("alpha_d", alpha_d)
    if exact:
        with np.errstate(divide="ignore"):
            rate = np.where(p >= 1, np.inf, -np.log1p(-np.minimum(p, 1 - 1e-300)))
    else:
        rate = p
    c = np.broadcast_to(rate * alpha_p / alpha_d, np.broadcast(p, alpha_p, alpha_d).shape).astype(float)
    lo, hi = np.zeros_like(c), np.full_like(c, 1.0 - 1e-15)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f = mid / (1 - mid) + np.log1p(-mid) - c
        lo = np.where(f < 0, mid, lo)
        hi = np.where(f < 0, hi, mid)
    return _out(0.5 * (lo + hi))

# --------------------------------------------------------------------------- p estimation


def p_offline(output_lens) -> float:
    """Offline termination probability ``p = 1/mean(L)`` (geometric MLE)."""
    L = _finite("output_lens", output_lens)
    if L.size == 0:
        raise ValueError("output_lens must not be empty")
    if np.any(L < 1):
        raise ValueError("output_lens must be >= 1 token")
    return float(1.0 / L.mean())


def p_ema(p, L, a):
    """Online update on a completion of length L: ``p <- a*(1/L) + (1-a)*p`` (vectorized)."""
    _check_p(p)
    _check_pos("L", L)
    a_ = _finite("a", a, "in (0, 1] (EMA weight)")
    if np.any((a_ <= 0) | (a_ > 1)):
        raise ValueError(f"a (EMA weight) must be in (0, 1], got {a!r}")
    return _out(a_ / np.asarray(L, dtype=float) + (1 - a_) * np.asarray(p, dtype=float))

def p_ema_inverse_mean(mean_L, L, a):
    """Unbiased alternative to ``p_ema``: EMA of the length, ``m <- a*L + (1-a)*m``, p = 1/m.

    ``p_ema`` tracks E[1/L], which for Geometric(p) outputs is p*ln(1/p)/(1-p)
    (6.2p at p = 0.002), so the paper's online k* drifts away from the offline k*;
    1/EMA(L) tracks 1/E[L] = p (pdlib finding, tests/test_sim_montecarlo.py).
    Returns the updated mean m (vectorized)."""
    _check_pos("mean_L", mean_L)
    _check_pos("L", L)
    a_ = _finite("a", a, "in (0, 1] (EMA weight)")
    if np.any((a_ <= 0) | (a_ > 1)):
        raise ValueError(f"a (EMA weight) must be in (0, 1], got {a!r}")
    return _out(a_ * np.asarray(L, dtype=float) + (1 - a_) * np.asarray(mean_L, dtype=float))

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
    n = np.floor((C - np.asarray(kappa(p, mu_L)) * np.log(1 / eps)) / np.asarray(D(theta, p, mu_L)))
    return _out(np.maximum(n, 0).astype(np.int64))


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
    b = np.asarray(sigma_S(p, var_L)) * np.sqrt(np.log(1 / eps))
    u = (-b + np.sqrt(b * b + 4 * Dv * C)) / (2 * Dv)
    n = np.floor(u * u)
    # guard against rounding at the boundary (either side)
    n = np.where(n * Dv + b * np.sqrt(n) > C, n - 1, n)
    n = np.where((n + 1) * Dv + b * np.sqrt(n + 1) <= C, n + 1, n)
    return _out(np.maximum(n, 0).astype(np.int64))

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
    return _out(np.floor((eta_ - 0.1 * eta_) / mu).astype(np.int64))


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

# --------------------------------------------------------------------------- KV bytes from a config

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "float16": 2, "fp16": 2, "half": 2,
               "bfloat16": 2, "bf16": 2, "float8": 1, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


def dtype_bytes(dtype: str) -> int:
    key = str(dtype).replace("torch.", "").lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return DTYPE_BYTES[key]


def kv_bytes_per_token(config, dtype: str | None = None) -> int:
    """KV-cache bytes per token: ``2 * layers * kv_heads * head_dim * bytes_per_element``
    (K and V per layer; GQA through num_key_value_heads). ``config`` is a Hugging Face
    config dict or object; ``dtype`` defaults to the config's torch_dtype/dtype.

    Refused with ValueError (their KV per token is not this product): sliding-window
    or mixed layer types (``use_sliding_window``, non-full ``layer_types``, Mistral-style
    ``sliding_window`` without ``use_sliding_window``), and latent attention (MLA,
    ``kv_lora_rank``)."""
    c = config if isinstance(config, dict) else config.to_dict()
    c = c.get("text_config", c) if "num_hidden_layers" not in c else c
    name = c.get("model_type", "model")
    if c.get("kv_lora_rank"):
        raise ValueError(f"{name}: latent attention (kv_lora_rank) is not supported by the 2*L*H*d formula")
    layer_types = c.get("layer_types")
    if layer_types and any(t != "full_attention" for t in layer_types):
        raise ValueError(f"{name}: mixed layer types {sorted(set(layer_types))} are not supported; "
                         "only full-attention models have a constant KV per token")
    if c.get("use_sliding_window") or ("use_sliding_window" not in c and c.get("sliding_window")):
        raise ValueError(f"{name}: sliding-window attention (sliding_window={c.get('sliding_window')}) "
                         "bounds the cache per layer; refusing to report a per-token figure")
    try:
        layers = int(c["num_hidden_layers"])
        heads = int(c["num_attention_heads"])
    except KeyError as e:
        raise ValueError(f"{name}: config has no {e.args[0]!r}") from None
    kv_heads = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or c["hidden_size"] // heads)
    dt = dtype or c.get("torch_dtype") or c.get("dtype") or "float16"
    return 2 * layers * kv_heads * head_dim * dtype_bytes(dt)


def kv_bytes_per_token_seed004(hidden_size: int = 2048, num_layers: int = 24, bytes_per_element: int = 2) -> int:
    """Seed 004's *incorrect* figure ``2 * layers * hidden_size * bytes`` (24 layers, no GQA):
    196,608 B/token for "Qwen3-1.7B" — kept only for the side-by-side budget."""
    return 2 * num_layers * hidden_size * bytes_per_element
