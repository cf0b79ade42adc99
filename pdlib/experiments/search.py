"""Which fixed k to run (notebook 02's k sweep): the adaptive k-hat search, the full sweep, and
throughput at two k with 95 % intervals over repeated runs and the gap verdict (issue 15 item 3,
issue 14 item 5).

**Modes** (``k_search``): ``full`` runs every k in 1..N-1 once; ``spread`` the older
``n_points`` spread (plus k*); ``list`` the ``ks`` given; ``adaptive`` the search below;
``auto`` is ``list`` when ``ks`` is given, ``adaptive`` when N >= ``ADAPTIVE_MIN_N``, else
``spread``.

**Repeats.** Repeat r of a run at k serves the workload in the order ``repeat_workload`` gives:
r = 0 the workload as loaded; r >= 1 a seeded permutation of its requests (``order="shuffle"``,
the default on the simulator, which is deterministic for a given order) or the same order again
(``"same"``, the default on real engines: their repeats differ by timing noise). Repeat r is the
same order for every k, so runs at different k with the same r are *paired* (common random
numbers): differences between k are measured on the same requests in the same order.

**Noise.** ``value(k, r) = mu_k + rho_r + e_kr``: an additive two-way model (rho_r, the order's
effect, is common to every k). sigma_e is estimated from the residuals of the largest
complete block of (k with >= 2 repeats) x (their common repeats), df = (K-1)(R-1). Two k
compared on their C common repeats: mean paired difference d, half-width
``t975(df) * sigma_e * sqrt(2/C)``. Before any repeat exists (no sigma_e), the half-width is
``1.96 * sqrt(se_a^2 + se_b^2)`` from each run's own standard error (ratio batch means over
its steady-state cycles, scaled to the whole-run rate): conservative, since it ignores the pairing.
A comparison inside its half-width is a tie.

**Adaptive search** (integers 1..N-1, maximise the whole-run requests/s, unimodality assumed):

1. *seed*: run k* (and the length-aware k*, when given); the better is the centre b.
2. *bracket*: run b - s and b + s (s = max(1, round(b/2)), clamped); when one side is better,
   move the centre there and keep stepping that way, doubling s ("bracket: expand"), until a
   run is not better (or the bound is reached): the bracket (a, b, c) has f(b) >= f(a), f(c).
3. *golden*: golden-section on integers: a point 0.382 into the longer side of (a, b, c);
   keep the better triple; stop when c - a <= 2 (b's neighbours both run).
4. every comparison inside its noise is repeated ("repeat: neighbours within noise") on both
   k with the lowest repeat index either lacks (indices stay aligned across k, so the two-way
   block grows), up to ``max_repeats`` runs per k and while the budget lasts; a tie that remains is
   resolved by the means (recorded as a tie).
5. result: k_hat = b (replaced by any run k that beats it outside the noise: "not unimodal");
   ``tied``: every run k not distinguishable from k_hat. ``identified`` is False when more
   than k_hat is tied: the curve is flat within noise there and the argmax is not identified.

Budget: ``max_runs`` (default ``FULL_SWEEP_SHARE * (N-1)``, at least 3) engine runs for the
search, repeats included. The runs for the throughput intervals (``ensure_repeats``) are logged
with reason "repeat: throughput CI" and counted apart.

**Gap with its 95 % interval** (``gap_over_repeats``), gap % = 100 (1 - R), R = S/H with S, H the
mean throughputs at k* and k_hat over n paired repeats. Delta method for a ratio of means:
residuals ``e_r = S_r - R H_r`` have mean 0 and ``Var(R_hat) ~= Var(e)/(n H^2)``, so
``se_R = sd(e) / (sqrt(n) H)`` and ``R in R_hat +- t975(n-1) se_R``; the gap interval is
``[100 (1 - R_hi), 100 (1 - R_lo)]``. With one repeat it falls back to the two runs' own
intervals (the rectangle ``[1 - S_hi/H_lo, 1 - S_lo/H_hi]``, conservative). k_hat is the best
of the same runs, so the measured gap is biased up (selection): a "pass" is not flattered.
The verdict is ``verdicts.verdict`` against ``gap_threshold_pct``.
"""
from __future__ import annotations

import bisect
import math

import numpy as np

from pdlib import verdicts
from pdlib.workload import Workload

FULL_SWEEP_SHARE = 0.25     # the adaptive search's default budget, as a share of the full sweep's N-1 runs
ADAPTIVE_MIN_N = 32         # "auto" searches adaptively from this N on (25 % of 31 runs: 7)
MODES = ("auto", "adaptive", "full", "spread", "list")
ORDERS = ("auto", "shuffle", "same")
GAP_THRESHOLD_PCT = 5.0     # pdlib's choice (the paper sets no threshold on the gap)
GOLDEN = 0.381966           # 2 - golden ratio


def resolve_mode(mode: str, N: int, ks=None) -> str:
    """``auto`` -> ``list`` (ks given), ``adaptive`` (N >= ADAPTIVE_MIN_N) or ``spread``."""
    if mode not in MODES:
        raise ValueError(f"k_search must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        return "list" if ks else ("adaptive" if N >= ADAPTIVE_MIN_N else "spread")
    if mode == "list" and not ks:
        raise ValueError("k_search='list' needs ks (a list of refill sizes in 1..N-1)")
    return mode


def resolve_order(order: str, engine_name: str | None) -> str:
    """``auto`` -> ``shuffle`` on the simulator (deterministic for one order), ``same`` elsewhere."""
    if order not in ORDERS:
        raise ValueError(f"repeat_order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "auto":
        return "shuffle" if engine_name == "sim" else "same"
    return order


def check_options(*, N: int, repeats: int, max_repeats: int, max_runs, gap_threshold_pct: float) -> None:
    """One-line errors naming the option and its allowed range."""
    if not isinstance(N, (int, np.integer)) or N < 2:
        raise ValueError(f"N must be an integer >= 2 for a k sweep (k in 1..N-1), got {N!r}")
    for name, v, lo in (("repeats", repeats, 1), ("max_repeats", max_repeats, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= 1000:
            raise ValueError(f"{name} must be an integer in 1..1000, got {v!r}")
    if max_runs is not None and (not isinstance(max_runs, (int, np.integer)) or not 1 <= max_runs <= 10**6):
        raise ValueError(f"max_runs must be None (25 % of the N-1 runs of a full sweep) or an integer in "
                         f"1..10^6, got {max_runs!r}")
    g = gap_threshold_pct
    if isinstance(g, bool) or not isinstance(g, (int, float, np.floating)) or not (math.isfinite(g) and 0 < g < 100):
        raise ValueError(f"gap_threshold_pct must be a number in (0, 100) (pdlib's choice: 5), got {g!r}")


def default_budget(N: int) -> int:
    return max(3, math.floor(FULL_SWEEP_SHARE * (N - 1)))


def repeat_workload(workload, seed: int, repeat: int, order: str):
    """The workload for repeat ``repeat`` (see the module docstring): r = 0 or order "same": as it is."""
    if repeat == 0 or order == "same":
        return workload
    perm = np.random.default_rng([int(seed), int(repeat), 15]).permutation(len(workload.requests))
    return Workload(workload.name, [workload.requests[i] for i in perm], workload.skipped,
                    dict(workload.meta, repeat=int(repeat), repeat_order=order))


def _mean_ci(x) -> dict:
    """Mean and 95 % t-interval of i.i.d. values (no interval below 2 values)."""
    x = np.asarray(x, float)
    n = x.size
    m = float(x.mean()) if n else verdicts.NAN
    if n < 2:
        return {"mean": m, "lo": verdicts.NAN, "hi": verdicts.NAN, "n": n}
    h = verdicts.t975(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return {"mean": m, "lo": m - h, "hi": m + h, "n": n}


class KSearch:
    """Runs of ``evaluate(k, repeat) -> row`` cached per (k, repeat) and logged in order with why;
    the noise model and comparisons of the module docstring; ``adaptive``/``sweep`` fill it."""

    def __init__(self, evaluate, N: int, *, metric: str = "requests_per_s", max_runs: int | None = None,
                 max_repeats: int = 3):
        if N < 2:
            raise ValueError(f"N must be >= 2 for a k sweep (k in 1..N-1), got {N}")
        if max_repeats < 1:
            raise ValueError(f"max_repeats must be >= 1, got {max_repeats}")
        self.evaluate, self.N, self.metric = evaluate, int(N), metric
        self.max_runs = default_budget(N) if max_runs is None else int(max_runs)
        self.max_repeats = int(max_repeats)
        self.rows: dict[tuple[int, int], dict] = {}
        self._reps: dict[int, list[int]] = {}        # k -> its repeats run, sorted (index of rows)
        self._noise: tuple[int, dict] | None = None  # (len(rows), noise()) : rows only grow
        self.log: list[dict] = []
        self.search_runs = 0
        self.notes: list[str] = []
        self.bracket = None

    # -- runs -------------------------------------------------------------------------------
    def run(self, k: int, r: int, reason: str, phase: str = "search") -> float:
        k, r = int(k), int(r)
        if (k, r) not in self.rows:
            row = self.evaluate(k, r)
            self.rows[(k, r)] = row
            bisect.insort(self._reps.setdefault(k, []), r)
            self.search_runs += phase == "search"
            se = self._run_se(row)
            self.log.append({"order": len(self.log) + 1, "k": k, "repeat": r, "reason": reason, "phase": phase,
                             self.metric: row[self.metric], "se": se})
        return self.rows[(k, r)][self.metric]

    def left(self) -> int:
        return self.max_runs - self.search_runs

    def reps(self, k: int) -> list[int]:
        return list(self._reps.get(int(k), ()))

    def values(self, k: int) -> dict[int, float]:
        return {r: self.rows[(k, r)][self.metric] for r in self.reps(k)}

    def _run_se(self, row) -> float:
        """One run's standard error of the whole-run rate: the steady-state ratio batch means'
        se, scaled by whole-run / steady rate (NaN when the run had too few cycles)."""
        se, st = row.get("steady_requests_per_s_se"), row.get("steady_requests_per_s")
        if se is None or not st or not math.isfinite(float(se)):
            return verdicts.NAN
        return float(se) * float(row[self.metric]) / float(st)

    # -- noise ------------------------------------------------------------------------------
    def noise(self) -> dict:
        """sigma_e of the two-way model (module docstring) from the largest complete block."""
        if self._noise is not None and self._noise[0] == len(self.rows):
            return dict(self._noise[1])
        self._noise = (len(self.rows), self._noise_now())
        return dict(self._noise[1])

    def _noise_now(self) -> dict:
        ks = [k for k in sorted({k for k, _ in self.rows}) if len(self.reps(k)) >= 2]
        best = None
        for R in sorted({len(self.reps(k)) for k in ks}):
            cand = [k for k in ks if len(self.reps(k)) >= R]
            common = sorted(set.intersection(*[set(self.reps(k)) for k in cand])) if cand else []
            if len(cand) >= 2 and len(common) >= 2:
                df = (len(cand) - 1) * (len(common) - 1)
                if best is None or df > best[2]:
                    best = (cand, common, df)
        if best is None:
            return {"sigma_e": None, "df": 0, "source": "within-run batch means (no repeats yet)"}
        cand, common, df = best
        Y = np.array([[self.rows[(k, r)][self.metric] for r in common] for k in cand])
        e = Y - Y.mean(axis=1, keepdims=True) - Y.mean(axis=0, keepdims=True) + Y.mean()
        return {"sigma_e": float(math.sqrt((e ** 2).sum() / df)), "df": int(df),
                "source": f"two-way residuals over k {cand} x repeats {common}"}

    def compare(self, a: int, b: int) -> tuple[int, float, float]:
        """(+1 a better, -1 b better, 0 tie), mean paired difference, half-width (module docstring)."""
        common = sorted(set(self.reps(a)) & set(self.reps(b)))
        va, vb = self.values(a), self.values(b)
        d = float(np.mean([va[r] - vb[r] for r in common]))
        nz = self.noise()
        if nz["sigma_e"] is not None:
            half = verdicts.t975(nz["df"]) * nz["sigma_e"] * math.sqrt(2.0 / len(common))
        else:
            sa = [self._run_se(self.rows[(a, r)]) for r in common]
            sb = [self._run_se(self.rows[(b, r)]) for r in common]
            half = verdicts.Z95 * math.sqrt((np.mean(np.square(sa)) + np.mean(np.square(sb))) / len(common))
        if not math.isfinite(half):
            half = 0.0 if nz["sigma_e"] is not None else math.inf
        return (0 if abs(d) <= half else (1 if d > 0 else -1)), d, half

    def better(self, a: int, b: int) -> int:
        """Compare a with b, repeating both while the difference is inside the noise and the
        budget and ``max_repeats`` allow; 0 for a tie that remains (noted in ``notes``)."""
        while True:
            c = self.compare(a, b)[0]
            if c != 0:
                return c
            ra, rb = set(self.reps(a)), set(self.reps(b))
            nxt = next((r for r in range(1, self.max_repeats) if r not in ra or r not in rb), None)
            need = 0 if nxt is None else (nxt not in ra) + (nxt not in rb)
            if nxt is None or self.left() < need:
                self.notes.append(f"k={a} vs k={b}: tied within noise after {len(ra & rb)} common repeat(s)")
                return 0
            why = f"repeat: neighbours within noise (k={a} vs k={b})"
            for k in (a, b):
                self.run(k, nxt, why)

    # -- strategies -------------------------------------------------------------------------
    def sweep(self, ks, reason: str) -> None:
        for k in ks:
            self.run(k, 0, reason)

    def adaptive(self, seeds: dict) -> None:
        """The search of the module docstring; ``seeds``: {reason: k} (e.g. {"seed k*": 12})."""
        lo, hi = 1, self.N - 1
        if hi - lo + 1 <= self.max_runs:
            self.sweep(range(lo, hi + 1), "full: 1..N-1 fits the budget")
            return
        b = None
        for why, k in seeds.items():
            k = min(max(int(k), lo), hi)
            if (k, 0) in self.rows:
                continue
            self.run(k, 0, why)
            if b is None or self.better(k, b) > 0:
                b = k
        s = max(1, round(b / 2))
        a, c = max(lo, b - s), min(hi, b + s)
        for x in (a, c):
            if x != b and self.left() > 0:
                self.run(x, 0, "bracket")
        side = [x for x in (a, c) if x != b and (x, 0) in self.rows and self.better(x, b) > 0]
        if side:
            x = max(side, key=lambda v: self.values(v)[0])
            step, direction = abs(x - b), (1 if x > b else -1)
            a, b = b, x
            while True:
                step *= 2
                nxt = min(max(b + direction * step, lo), hi)
                if nxt == b or self.left() <= 0:
                    c = b
                    break
                self.run(nxt, 0, "bracket: expand")
                if self.better(nxt, b) > 0:
                    a, b = b, nxt
                else:
                    c = nxt
                    break
            a, c = min(a, c), max(a, c)
        self.bracket = [a, b, c]
        while c - a > 2 and self.left() > 0:
            if c - b >= b - a:
                x = min(b + max(1, round(GOLDEN * (c - b))), c - 1)
            else:
                x = max(b - max(1, round(GOLDEN * (b - a))), a + 1)
            self.run(x, 0, "golden")
            cmp = self.better(x, b)
            if cmp == 0:
                cmp = 1 if np.mean([self.values(x)[r] - self.values(b)[r]
                                    for r in set(self.reps(x)) & set(self.reps(b))]) > 0 else -1
            if x > b:
                a, b, c = (b, x, c) if cmp > 0 else (a, b, x)
            else:
                a, b, c = (a, x, b) if cmp > 0 else (x, b, c)
            self.bracket = [a, b, c]
        if c - a > 2:
            self.notes.append(f"budget of {self.max_runs} runs spent with the bracket still [{a}, {c}]")

    # -- result -----------------------------------------------------------------------------
    def best(self) -> tuple[int, list[int]]:
        """(k_hat, tied): the bracket's centre (or, in a sweep, the best at repeat 0), replaced
        by any k that beats it outside the noise; tied: k not distinguishable from k_hat."""
        ks = sorted({k for k, _ in self.rows})
        kb = self.bracket[1] if self.bracket else max(ks, key=lambda k: (self.values(k)[0], -k))
        for _ in range(len(ks)):
            beat = [k for k in ks if k != kb and self.compare(k, kb)[0] > 0]
            if not beat:
                break
            if self.bracket:
                self.notes.append(f"not unimodal: k={beat[0]} beats the bracket's centre k={kb}")
            kb = max(beat, key=lambda k: self.compare(k, kb)[1])
        tied = sorted([kb] + [k for k in ks if k != kb and self.compare(k, kb)[0] == 0])
        return kb, tied

    def per_k(self) -> list[dict]:
        out = []
        for k in sorted({k for k, _ in self.rows}):
            v = list(self.values(k).values())
            ci = _mean_ci(v)
            out.append({"k": k, "repeats": len(v), "mean": ci["mean"], "ci": [ci["lo"], ci["hi"]]})
        return out

    def to_json(self, mode: str, order: str) -> dict:
        kb, tied = self.best()
        ident = len(tied) == 1
        note = ("" if ident else f"the curve is flat within noise around k̂ = {kb}: the argmax is not identified; "
                f"k statistically tied with the best: {tied}")
        return {"mode": mode, "N": self.N, "metric": self.metric, "k_hat": kb, "tied": tied, "identified": ident,
                "note": note, "notes": list(dict.fromkeys(self.notes)), "full_sweep_runs": self.N - 1, "budget": self.max_runs,
                "search_runs": self.search_runs, "share_of_full_sweep": self.search_runs / (self.N - 1),
                "total_runs": len(self.log), "max_repeats": self.max_repeats, "repeat_order": order,
                "bracket": self.bracket, "noise": self.noise(), "runs": list(self.log), "per_k": self.per_k()}

    def ensure_repeats(self, k: int, repeats: int) -> list[float]:
        """Runs 0..repeats-1 at k (reusing the search's), logged "repeat: throughput CI"."""
        return [self.run(k, r, "repeat: throughput CI", phase="ci") for r in range(int(repeats))]


def gap_over_repeats(search: KSearch, k_star: int, k_hat: int, repeats: int,
                     threshold_pct: float = GAP_THRESHOLD_PCT) -> dict:
    """Throughput at k* and k_hat over ``repeats`` paired runs with 95 % intervals, the gap %
    with its interval (delta method, module docstring) and its verdict against ``threshold_pct``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    S = np.asarray(search.ensure_repeats(k_star, repeats), float)
    H = np.asarray(search.ensure_repeats(k_hat, repeats), float)
    n = len(S)
    R = float(S.mean() / H.mean())
    if n >= 2:
        se = float((S - R * H).std(ddof=1)) / (math.sqrt(n) * float(H.mean()))
        h = verdicts.t975(n - 1) * se
        lo, hi, src = 100 * (1 - (R + h)), 100 * (1 - (R - h)), f"{n} paired repeats (delta method, t{n - 1})"
        civ = {k: _mean_ci(v) for k, v in (("k_star", S), ("k_hat", H))}
    else:
        civ = {}
        for key, k, v in (("k_star", k_star, S[0]), ("k_hat", k_hat, H[0])):
            se1 = search._run_se(search.rows[(k, 0)])
            civ[key] = {"mean": float(v), "lo": v - verdicts.Z95 * se1, "hi": v + verdicts.Z95 * se1, "n": 1}
        lo = 100 * (1 - civ["k_star"]["hi"] / civ["k_hat"]["lo"]) if civ["k_hat"]["lo"] > 0 else verdicts.NAN
        hi = 100 * (1 - civ["k_star"]["lo"] / civ["k_hat"]["hi"])
        src = "1 repeat: the two runs' own intervals (batch means), conservative rectangle"
    if k_star == k_hat:
        lo = hi = 0.0
        src = "k* = k̂: the same runs, gap 0"
    gap = 100 * (1 - R)
    out = {"repeats": n, "repeat_order": None, "gap_pct": gap, "gap_ci": [lo, hi], "gap_source": src,
           "gap_threshold_pct": float(threshold_pct),
           "gap_threshold_note": "pdlib's choice, not the paper's (the paper sets no threshold on the gap)",
           "gap_verdict": verdicts.verdict(lo, hi, threshold_pct)}
    for key, k, v in (("k_star", k_star, S), ("k_hat", k_hat, H)):
        out[key] = {"k": int(k), "requests_per_s": civ[key]["mean"], "ci": [civ[key]["lo"], civ[key]["hi"]],
                    "values": [float(x) for x in v]}
    return out
