"""Timing model and throughput of exclusive batching: tau, k*, theta*, and the estimators of p.

Paper: Zhang et al., ICML 2026, arXiv:2606.00516 (see ``pdlib.theory`` for notation)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import _check_N_alloc, _check_nonneg, _check_p, _check_pos, _finite, _out

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


#: the quantities a fit's range is recorded for: TimingModel field -> name in warnings
RANGE_FIELDS = {"prefill_tokens_range": "prefill tokens", "decode_batch_range": "decode batch",
                "context_range": "context length"}


@dataclass(frozen=True)
class Extrapolation:
    """One use of a fitted timing model outside the range it was measured on."""
    quantity: str                      # "prefill tokens" | "decode batch" | "context length"
    needed: float                      # the value the use needs
    measured: tuple                    # (lo, hi) of the fit's samples

    @property
    def message(self) -> str:
        lo, hi = self.measured
        side = f"> measured {hi:g}" if self.needed > hi else f"< measured {lo:g}"
        return f"extrapolated: {self.quantity} {self.needed:g} {side}"

    def to_dict(self) -> dict:
        return {"quantity": self.quantity, "needed": self.needed, "measured_lo": self.measured[0],
                "measured_hi": self.measured[1], "message": self.message}


def _range(values) -> tuple | None:
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else None


@dataclass(frozen=True)
class TimingModel:
    """Fitted step-time model (seconds): prefill ``alpha_p + beta_p*T``, decode ``alpha_d + beta_d*j``.

    ``*_range``: (lo, hi) of the samples the fit was made on (None: not recorded, e.g. a
    published calibration); ``extrapolation`` lists the uses beyond them."""
    alpha_p: float
    beta_p: float
    alpha_d: float
    beta_d: float
    r2_prefill: float = float("nan")
    r2_decode: float = float("nan")
    prefill_tokens_range: tuple | None = None
    decode_batch_range: tuple | None = None
    context_range: tuple | None = None

    def __post_init__(self):
        for name in ("alpha_p", "beta_p", "alpha_d", "beta_d"):
            _check_nonneg(name, getattr(self, name))
        for name in RANGE_FIELDS:
            r = getattr(self, name)
            if r is not None:
                if len(r) != 2 or not all(np.isfinite(float(x)) for x in r) or float(r[0]) > float(r[1]):
                    raise ValueError(f"{name} must be (lo, hi) with lo <= hi, got {r!r}")
                object.__setattr__(self, name, (float(r[0]), float(r[1])))

    def with_ranges(self, **values) -> TimingModel:
        """A copy with ranges from sample values: ``prefill_tokens=``, ``decode_batch=``, ``context=``."""
        from dataclasses import replace
        keys = {"prefill_tokens": "prefill_tokens_range", "decode_batch": "decode_batch_range",
                "context": "context_range"}
        bad = sorted(set(values) - set(keys))
        if bad:
            raise TypeError(f"with_ranges() got unexpected keyword arguments {bad}")
        return replace(self, **{keys[k]: _range(v) for k, v in values.items()})

    def extrapolation(self, *, prefill_tokens=None, decode_batch=None, context=None) -> list[Extrapolation]:
        """The uses outside the fitted ranges: each argument is the value(s) a use needs (its
        largest and smallest are checked); ranges not recorded are not checked. A relative
        slack of 1e-9 keeps rounding from warning."""
        out = []
        for name, need in (("prefill_tokens_range", prefill_tokens), ("decode_batch_range", decode_batch),
                           ("context_range", context)):
            rng, v = getattr(self, name), _range(need) if need is not None else None
            if rng is None or v is None:
                continue
            lo, hi = rng
            eps = 1e-9 * max(abs(hi), 1.0)
            if v[1] > hi + eps:
                out.append(Extrapolation(RANGE_FIELDS[name], v[1], rng))
            if v[0] < lo - eps:
                out.append(Extrapolation(RANGE_FIELDS[name], v[0], rng))
        return out

    @classmethod
    def from_dict(cls, d, where: str = "timing") -> TimingModel:
        """The one reader of a timing model written as a mapping (an engine YAML's ``timing:``,
        a saved profile's ``timing``): the four coefficients, optional ``r2_prefill``/``r2_decode``."""
        if not isinstance(d, dict):
            raise ValueError(f"{where} must be a mapping with alpha_p, beta_p, alpha_d, beta_d; got {d!r}")  # noqa: TRY004
        missing = [k for k in ("alpha_p", "beta_p", "alpha_d", "beta_d") if k not in d]
        if missing:
            raise ValueError(f"{where} needs alpha_p, beta_p, alpha_d, beta_d; missing {', '.join(missing)}")
        kw = {}
        for k in ("alpha_p", "beta_p", "alpha_d", "beta_d", "r2_prefill", "r2_decode"):
            if k in d and d[k] is not None:
                try:
                    kw[k] = float(d[k])
                except (TypeError, ValueError):
                    raise ValueError(f"{where}.{k} must be a number, got {d[k]!r}") from None
        for k in RANGE_FIELDS:
            if d.get(k) is not None:
                r = d[k]
                try:
                    kw[k] = (float(r[0]), float(r[1])) if len(r) == 2 else None
                except (TypeError, ValueError, KeyError):
                    kw[k] = None
                if kw[k] is None:
                    raise ValueError(f"{where}.{k} must be [lo, hi] (two numbers), got {r!r}")
        try:
            return cls(**kw)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def as_kwargs(self) -> dict:
        return {"alpha_p": self.alpha_p, "beta_p": self.beta_p,
                "alpha_d": self.alpha_d, "beta_d": self.beta_d}

    def prefill_time(self, tokens):
        return self.alpha_p + self.beta_p * np.asarray(tokens, dtype=float)

    def decode_time(self, batch):
        return self.alpha_d + self.beta_d * np.asarray(batch, dtype=float)


def fit_timing(prefill_tokens, prefill_s, decode_batch, decode_s, decode_context=None) -> TimingModel:
    """Fit both linear models by least squares; negative intercepts/slopes from noise
    are clipped to 0 (reported R^2 is that of the unclipped fit). The fit's ranges (prefill
    tokens, decode batch and, when ``decode_context`` is given, context length) are recorded."""
    fp = fit_linear(prefill_tokens, prefill_s)
    fd = fit_linear(decode_batch, decode_s)
    return TimingModel(max(fp.intercept, 0.0), max(fp.slope, 0.0),
                       max(fd.intercept, 0.0), max(fd.slope, 0.0), fp.r2, fd.r2,
                       _range(prefill_tokens), _range(decode_batch),
                       _range(decode_context) if decode_context is not None else None)

# --------------------------------------------------------------------------- throughput / k*


def tau(j, p, alpha_d, beta_d):
    """Expected time per completion while decoding batch j (vectorized):
    ``tau(j) = (alpha_d + beta_d*j) / (1 - (1-p)**j)`` — a step takes
    alpha_d + beta_d*j and ends at least one request with probability 1-(1-p)^j
    (paper, decode-phase cost, Sec. 4). tau(0) = inf. 1-(1-p)^j is computed as
    ``-expm1(j*log1p(-p))``, exact to rounding even for tiny p (the plain form loses
    digits: 2e-5 relative at p = 1e-12)."""
    p = _check_p(p)
    _check_nonneg("alpha_d", alpha_d)
    _check_nonneg("beta_d", beta_d)
    j = _check_nonneg("j", j)
    with np.errstate(divide="ignore", invalid="ignore"):
        done = np.where(j > 0, -np.expm1(j * np.log1p(-p)), 0.0)   # j = 0, p = 1: 0*-inf
        return _out((alpha_d + beta_d * j) / done)


def _tau_suffix_sums(N, p, alpha_d, beta_d):
    """S[k] = sum_{j=N-k+1..N} tau(j) for k = 0..N."""
    t = np.asarray(tau(np.arange(1, N + 1), p, alpha_d, beta_d), dtype=float)
    return np.concatenate([[0.0], np.cumsum(t[::-1])])


def throughput(k, N, p, alpha_p, beta_p, alpha_d, beta_d, mu_L=0.0):
    """Requests per second of exclusive batching with refill size k (vectorized in k):
    ``k / (alpha_p + beta_p*k*mu_L + sum_{j=N-k+1..N} tau(j))`` (paper, cycle
    throughput: one prefill of k requests plus decoding from batch N down to N-k).
    N <= ``N_MAX`` (arrays of size N)."""
    N = _check_N_alloc(N)
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
    fidelity, and ``fallback_used`` says so. N <= ``N_MAX`` (arrays of size N).
    """
    N = _check_N_alloc(N)
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
