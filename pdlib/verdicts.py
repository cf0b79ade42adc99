"""Honest comparisons (numpy only): signed errors, 95 % intervals, steady-state detection and
the pass / fail / inconclusive rule every validation report uses.

* ``signed_error_pct(pred, meas) = 100 * (pred/meas - 1)``: > 0 the prediction is high.
* ``batch_means_ci``: 95 % confidence interval of the mean of a correlated series (cycles of
  one run) by non-overlapping batch means, Student t with (batches - 1) degrees of freedom.
* ``ratio_ci``: the same for a ratio of sums (requests per second over cycles).
* ``mser``: MSER-5 truncation (White 1997, "An effective truncation heuristic for bias
  reduction in simulation output"): batch the series in 5s, choose the truncation d (in
  batches, d <= n_batches/2) minimising ``sum_{j>d} (Z_j - mean)^2 / (n_b - d)^2`` (the squared
  standard error of the mean of what is kept). No assumption on the length law: on a heavy tail
  it keeps dropping cycles for as long as the level still climbs; a minimum at the limit
  n/2 means no steady state was found (``at_limit``).
* ``error_interval``: the signed error's interval from the intervals of the prediction
  (a point when it has none) and of the measurement: ``[pred_lo/meas_hi - 1, pred_hi/meas_lo - 1]``
  (conservative: a rectangle of two 95 % intervals).
* ``verdict``: "pass" only when the whole interval lies inside (-threshold, threshold),
  "fail" when it lies wholly outside, "inconclusive" when it straddles (or there is no
  interval): never "pass" from a point estimate.
* ``p_interval``: p = 1/mean(L) with its 95 % interval from the t-interval of the mean.
* ``request_counts``: requested vs used requests, with a warning and its reason.
"""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
Z95 = 1.959963984540054
# Student t 0.975 quantiles for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
NAN = float("nan")


def t975(df: int) -> float:
    """Student t 0.975 quantile (table to 30 df, Cornish-Fisher expansion beyond)."""
    if df < 1:
        return NAN
    if df <= 30:
        return _T975[df - 1]
    z = Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def signed_error_pct(pred, meas) -> float:
    """``100 * (pred/meas - 1)`` (NaN when either is missing or meas is 0)."""
    if not (_finite(pred) and _finite(meas)) or float(meas) == 0:
        return NAN
    return 100.0 * (float(pred) / float(meas) - 1.0)


def batch_means_ci(x, n_batches: int = 20) -> dict:
    """Mean, standard error and 95 % interval of a correlated series by batch means.

    ``min(n_batches, n // 2)`` batches of equal size (the first ``n % batches`` values are left
    out of the batches, not of the mean); fewer than 4 values: no interval (NaN)."""
    x = np.asarray(x, dtype=float).ravel()
    n = x.size
    mean = float(x.mean()) if n else NAN
    B = min(int(n_batches), n // 2)
    if n < 4 or B < 2:
        return {"mean": mean, "se": NAN, "lo": NAN, "hi": NAN, "n": n, "batches": 0}
    m = x[n % B:].reshape(B, -1).mean(axis=1)
    se = float(m.std(ddof=1) / math.sqrt(B))
    h = t975(B - 1) * se
    return {"mean": mean, "se": se, "lo": mean - h, "hi": mean + h, "n": n, "batches": B}


def ratio_ci(num, den, n_batches: int = 20) -> dict:
    """``R = sum(num)/sum(den)`` with a 95 % interval by batch means (delta method on the
    batch sums: residuals ``num_b - R den_b``)."""
    num, den = np.asarray(num, float).ravel(), np.asarray(den, float).ravel()
    n = num.size
    R = float(num.sum() / den.sum()) if n and den.sum() > 0 else NAN
    B = min(int(n_batches), n // 2)
    if n < 4 or B < 2 or not math.isfinite(R):
        return {"mean": R, "se": NAN, "lo": NAN, "hi": NAN, "n": n, "batches": 0}
    s = n % B
    nb, db = num[s:].reshape(B, -1).sum(axis=1), den[s:].reshape(B, -1).sum(axis=1)
    se = float((nb - R * db).std(ddof=1) / math.sqrt(B) / db.mean())
    h = t975(B - 1) * se
    return {"mean": R, "se": se, "lo": R - h, "hi": R + h, "n": n, "batches": B}


def mser(x, batch: int = 5) -> dict:
    """MSER-``batch`` truncation point of a series (see the module docstring).

    Returns ``truncate`` (values to drop at the start), ``d`` (in batches), ``n_batches``,
    ``at_limit`` (the minimum sits at the d <= n_b/2 limit: no steady state found) and
    ``reason`` (one sentence)."""
    x = np.asarray(x, dtype=float).ravel()
    n = x.size
    nb = n // batch
    if nb < 4:
        return {"truncate": 0, "d": 0, "n_batches": nb, "at_limit": False, "ok": False,
                "reason": f"MSER-{batch} not applied: {n} values are fewer than {4 * batch}"}
    z = x[: nb * batch].reshape(nb, batch).mean(axis=1)
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    m = nb - np.arange(nb)
    ss = np.maximum(s2 - s1 * s1 / m, 0.0)
    stat = ss / m.astype(float) ** 2
    dmax = nb // 2
    d = int(np.argmin(stat[: dmax + 1]))
    at_limit = d == dmax and dmax > 0
    reason = (f"MSER-{batch}: truncating {d} batch(es) of {batch} minimises the standard error of the rest"
              if d else f"MSER-{batch}: no warm-up transient detected")
    if at_limit:
        reason += f" — the minimum is at the limit n/2 ({dmax} batches): no steady state found, run longer"
    return {"truncate": d * batch, "d": d, "n_batches": nb, "at_limit": bool(at_limit), "ok": not at_limit,
            "reason": reason}


def error_interval(pred, meas_ci: dict, pred_ci: dict | None = None) -> dict:
    """Signed error (%) of ``pred`` against a measured mean with interval ``meas_ci`` (a
    ``batch_means_ci`` dict), and its interval (see the module docstring)."""
    m, lo, hi = meas_ci.get("mean"), meas_ci.get("lo"), meas_ci.get("hi")
    p_lo = p_hi = pred
    if pred_ci is not None and _finite(pred_ci.get("lo")):
        p_lo, p_hi = pred_ci["lo"], pred_ci["hi"]
    err = signed_error_pct(pred, m)
    if not (_finite(lo) and _finite(hi) and _finite(p_lo) and _finite(p_hi)) or lo <= 0:
        return {"error_pct": err, "lo": NAN, "hi": NAN}
    return {"error_pct": err, "lo": 100.0 * (p_lo / hi - 1.0), "hi": 100.0 * (p_hi / lo - 1.0)}


def verdict(lo, hi, threshold_pct: float) -> str:
    """"pass": the whole interval [lo, hi] inside (-threshold, threshold); "fail": wholly
    outside; "inconclusive": it straddles a threshold, or there is no interval."""
    if not (_finite(lo) and _finite(hi)):
        return "inconclusive"
    t = float(threshold_pct)
    if -t < lo and hi < t:
        return "pass"
    if lo >= t or hi <= -t:
        return "fail"
    return "inconclusive"


def verdict_at_least(lo, hi, threshold: float) -> str:
    """For a quantity that must reach ``threshold`` (e.g. bound valid at >= 90 % of x):
    "pass" when lo >= threshold, "fail" when hi < threshold, else "inconclusive"."""
    if not (_finite(lo) and _finite(hi)):
        return "inconclusive"
    if lo >= threshold:
        return "pass"
    if hi < threshold:
        return "fail"
    return "inconclusive"


def wilson(successes, n) -> tuple[np.ndarray, np.ndarray]:
    """95 % Wilson interval of a proportion (vectorized over ``successes``)."""
    k = np.asarray(successes, float)
    if n <= 0:
        return np.full(k.shape, 0.0), np.full(k.shape, 1.0)
    ph, z2 = k / n, Z95 ** 2
    c = (ph + z2 / (2 * n)) / (1 + z2 / n)
    h = Z95 * np.sqrt(ph * (1 - ph) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return np.clip(c - h, 0, 1), np.clip(c + h, 0, 1)


def p_interval(output_lens) -> dict:
    """``p = 1/mean(L)`` and its 95 % interval ``[1/mean_hi, 1/mean_lo]`` from the
    t-interval of the mean of i.i.d. output lengths (heavy tails make it optimistic)."""
    L = np.asarray(output_lens, float).ravel()
    n = L.size
    if n == 0:
        return {"p": NAN, "p_lo": NAN, "p_hi": NAN, "mean": NAN, "mean_lo": NAN, "mean_hi": NAN, "n": 0}
    mean = float(L.mean())
    h = t975(n - 1) * float(L.std(ddof=1)) / math.sqrt(n) if n > 1 else NAN
    lo, hi = max(mean - h, 1.0), mean + h
    return {"p": 1.0 / mean, "p_lo": 1.0 / hi if _finite(hi) else NAN, "p_hi": 1.0 / lo if _finite(lo) else NAN,
            "mean": mean, "mean_lo": lo, "mean_hi": hi, "n": n}


def request_counts(requested, used: int, meta: dict | None = None) -> dict:
    """Requested vs used requests; ``warning`` (a sentence with the reason) when fewer were
    used than asked, from the loader's counts in ``meta`` (records, parsed, skipped and why)."""
    meta = meta or {}
    out = {"requested": None if requested is None else int(requested), "used": int(used), "warning": None}
    if requested is None or int(used) >= int(requested):
        return out
    why = []
    if meta.get("records") is not None:
        why.append(f"the source has {meta['records']} record(s)")
    if meta.get("parsed") is not None and meta.get("parsed") != meta.get("records"):
        why.append(f"{meta['parsed']} parsed")
    if meta.get("outside_split"):
        why.append(f"{meta['outside_split']} outside the split")
    if meta.get("skipped"):
        reasons = meta.get("skip_reasons") or {}
        r = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
        why.append(f"{meta['skipped']} skipped" + (f" ({r})" if r else ""))
    reason = "; ".join(why) if why else "the dataset has fewer usable requests than asked"
    out["warning"] = f"{requested} requests asked, only {used} used: {reason}"
    out["reason"] = reason
    return out
