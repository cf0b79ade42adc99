"""Engine-agnostic summaries of a per-step log (sim, native and vLLM alike).

Input: a ``records.StepLog`` or the simulator's column dict (``SimResult.columns``:
numpy ``is_prefill``, ``kv_tokens``, ``batch_size``, ``duration_s``,
``finished_count``). Everything is vectorized over steps.

Memory cycles (paper, Sec. 5): a *cycle* is one decode phase (a maximal run of
decode steps) together with the refill prefill(s) just before it.
``X0`` = KV tokens held after that prefill (= at the start of the decode phase),
``Xmax`` = max(X0, KV after each decode step of the phase), ``supY = Xmax - X0``
(``Y_t = X_t - X0``, so ``supY >= 0``). Kept cycles are *steady-state* ones:

* the first ``warmup`` cycles are dropped (the transient from the initial fill,
  where every request is fresh). ``warmup="auto"``: the initial cohort decays by a
  factor ``(1-theta)`` per cycle (each active request leaves in a cycle with
  probability theta under geometric outputs), and its X0 deficit is at most that
  fraction, so ``ceil(ln(1e-3)/ln(1-theta_hat))`` cycles bring the bias under 0.1 %;
  ``theta_hat`` = mean refill / N from the log itself;
* a decode phase not followed by a prefill is dropped (the drain at the end of a
  finite workload, or a run cut by a step limit);
* with ``require_full`` (default) a phase must start with the full batch N
  (N = the largest decode batch in the log).

``warmup="auto"`` assumes geometric outputs: on a heavy tail X0 is still climbing through the
cycles it keeps. ``warmup="mser"`` detects the steady state from the X0 series itself
(MSER-5, ``pdlib.verdicts.mser``: no assumption on the lengths; the initial-fill cycle is
always dropped); ``Cycles.warmup_info`` says how many cycles were dropped and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pdlib import verdicts


def _arrays(log) -> dict:
    """Numeric columns of a StepLog / column dict, plus finished counts per step."""
    if isinstance(log, dict):
        c = log
        isp = (
            np.asarray(c["is_prefill"], dtype=bool)
            if "is_prefill" in c
            else np.asarray(c["phase"], dtype=object) == "prefill"
        )
        fin = c.get("finished_count")
        if fin is None:
            fin = _lengths(c["finished"])
    else:
        c = log.columns
        isp = log.is_prefill()
        fin = _lengths(c["finished"])
    return {
        "is_prefill": np.asarray(isp, dtype=bool),
        "kv": np.asarray(c["kv_tokens"], dtype=np.float64),
        "batch": np.asarray(c["batch_size"], dtype=np.int64),
        "dur": np.asarray(c["duration_s"], dtype=np.float64),
        "fin": np.asarray(fin, dtype=np.int64),
    }


def _lengths(col) -> np.ndarray:
    if hasattr(col, "lengths"):
        return np.asarray(col.lengths())
    return np.fromiter((len(x) for x in col), dtype=np.int64, count=len(col))


def decode_runs(is_prefill) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) step index of every maximal run of decode steps (inclusive)."""
    d = np.concatenate([[0], (~np.asarray(is_prefill, dtype=bool)).astype(np.int8), [0]])
    edges = np.diff(d)
    return np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1


@dataclass
class Cycles:
    """Per-cycle arrays (one entry per kept cycle) and how they were selected."""

    start_step: np.ndarray  # first decode step of the phase
    end_step: np.ndarray  # last decode step (inclusive)
    X0: np.ndarray
    Xmax: np.ndarray
    supY: np.ndarray
    refill: np.ndarray  # requests admitted by the prefill step(s) just before
    decode_steps: np.ndarray
    duration_s: np.ndarray  # refill prefill(s) + decode phase, seconds
    warmup: int  # cycles dropped at the start
    total: int  # decode phases in the log
    N: int  # the full batch (largest decode batch in the log)
    theta_hat: float  # mean refill / N over complete cycles after the first
    warmup_info: dict = field(default_factory=dict)  # rule, cycles dropped, reason

    def __len__(self) -> int:
        return int(self.X0.size)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "start_step": self.start_step,
                "end_step": self.end_step,
                "X0": self.X0,
                "Xmax": self.Xmax,
                "supY": self.supY,
                "refill": self.refill,
                "decode_steps": self.decode_steps,
                "duration_s": self.duration_s,
            }
        )


def auto_warmup(theta_hat: float, tol: float = 1e-3) -> int:
    """Cycles until the initial cohort is below ``tol`` of the batch: ``ceil(ln tol / ln(1-theta))``."""
    if not 0 < theta_hat < 1:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(1 - theta_hat)))


def cycles(log, *, warmup="auto", require_full: bool = True, column: str = "kv_tokens") -> Cycles:
    """Steady-state memory cycles of a step log (see the module docstring).

    ``warmup``: "auto", "mser", an int (cycles), or a float in (0, 1) (fraction of cycles).
    ``column``: the memory column (``kv_tokens``, or ``kv_bytes`` for bytes)."""
    a = _arrays(log)
    if column != "kv_tokens":
        c = log if isinstance(log, dict) else log.columns
        a["kv"] = np.asarray(c[column], dtype=np.float64)
    isp, kv, batch, dur = a["is_prefill"], a["kv"], a["batch"], a["dur"]
    S = isp.size
    starts, ends = decode_runs(isp)
    ok = starts > 0  # a phase needs a prefill before it
    starts, ends = starts[ok], ends[ok]
    empty = np.zeros(0)
    if starts.size == 0:
        return Cycles(
            empty.astype(int),
            empty.astype(int),
            empty,
            empty,
            empty,
            empty.astype(int),
            empty.astype(int),
            empty,
            0,
            0,
            0,
            float("nan"),
        )
    N = int(batch[~isp].max())
    # X0 and Xmax
    X0 = kv[starts - 1]
    kv_ext = np.append(kv, 0.0)
    peak = np.maximum.reduceat(kv_ext, np.ravel(np.column_stack([starts, ends + 1])))[::2]
    Xmax = np.maximum(X0, peak)
    # refill = prefill batches between the previous phase's end and this start
    cum_pf = np.concatenate([[0], np.cumsum(np.where(isp, batch, 0))])
    cum_t = np.concatenate([[0.0], np.cumsum(dur)])
    prev_end = np.concatenate([[-1], ends[:-1]])
    refill = cum_pf[starts] - cum_pf[prev_end + 1]
    duration = cum_t[ends + 1] - cum_t[prev_end + 1]
    complete = ends + 1 < S
    full = batch[starts] == N
    total = int(starts.size)
    later = complete.copy()
    later[0] = False
    theta_hat = float(refill[later].mean() / N) if later.any() and N > 0 else float("nan")
    keep = complete & (full if require_full else True)
    info = {"rule": str(warmup)}
    if warmup == "mser":
        cand = np.nonzero(keep)[0]
        cand = cand[cand >= 1]                     # the initial-fill cycle is never steady state
        m = verdicts.mser(X0[cand])
        w = max(1, int(cand[m["truncate"]]) if m["truncate"] < cand.size else total)
        info.update(m, rule="MSER-5 on X0", reason=m["reason"] + f"; {w} cycle(s) dropped (initial fill included)")
    elif warmup == "auto":
        w = auto_warmup(theta_hat)
        info["reason"] = (f"geometric rule ceil(ln 1e-3 / ln(1 - theta_hat)) = {w} (assumes geometric outputs; "
                          f"theta_hat = {theta_hat:.3g})")
    elif isinstance(warmup, float) and 0 < warmup < 1:
        w = math.ceil(warmup * total)
    elif warmup is None:
        w = 0
    else:
        w = int(warmup)
        if w < 0:
            raise ValueError(f"warmup must be 'auto', 'mser', an int >= 0 or a fraction in (0, 1), got {warmup!r}")
    if "reason" not in info:
        info["reason"] = f"{w} cycle(s) dropped as asked (warmup={warmup!r})"
    info["dropped"] = int(min(w, total))
    keep[:w] = False
    return Cycles(
        starts[keep],
        ends[keep],
        X0[keep],
        Xmax[keep],
        Xmax[keep] - X0[keep],
        refill[keep],
        (ends - starts + 1)[keep],
        duration[keep],
        min(w, total),
        total,
        N,
        theta_hat,
        info,
    )


def memory_summary(log, *, warmup="auto", require_full: bool = True, column: str = "kv_tokens") -> dict:
    """Means over steady-state cycles: ``E_X0``, ``E_Xmax``, ``E_supY`` (+ std, standard
    error of E_X0 by batch means, counts, theta_hat)."""
    cy = (
        log
        if isinstance(log, Cycles)
        else cycles(log, warmup=warmup, require_full=require_full, column=column)
    )
    n = len(cy)
    nan = float("nan")
    out = {
        "E_X0": float(cy.X0.mean()) if n else nan,
        "E_Xmax": float(cy.Xmax.mean()) if n else nan,
        "E_supY": float(cy.supY.mean()) if n else nan,
        "std_X0": float(cy.X0.std()) if n else nan,
        "std_Xmax": float(cy.Xmax.std()) if n else nan,
        "std_supY": float(cy.supY.std()) if n else nan,
        "se_X0": batch_means_se(cy.X0),
        "cycles": n,
        "warmup_cycles": cy.warmup,
        "total_cycles": cy.total,
        "N_observed": cy.N,
        "theta_hat": cy.theta_hat,
        "mean_refill": float(cy.refill.mean()) if n else nan,
    }
    return out


def batch_means_se(x, n_batches: int = 20) -> float:
    """Standard error of mean(x) for a correlated series (batch means)."""
    x = np.asarray(x, dtype=float)
    if x.size < 2 * n_batches:
        return float("nan")
    m = x[: x.size - x.size % n_batches].reshape(n_batches, -1).mean(axis=1)
    return float(m.std(ddof=1) / math.sqrt(n_batches))


def throughput_summary(log, *, warmup=None, require_full: bool = False) -> dict:
    """Requests/s, output tokens/s, total time, prefill/decode step counts, mean decode batch.

    ``warmup=None``: over the whole log (what a user waiting for the run sees).
    Otherwise (e.g. "auto") only over steady-state cycles: from the refill prefill of
    the first kept cycle to the end of the last kept one (needs an unbounded queue).
    Output tokens = prefill batch sizes (token 1 of each request) + decode batch sizes."""
    a = _arrays(log)
    isp, batch, dur, fin = a["is_prefill"], a["batch"], a["dur"], a["fin"]
    lo, hi = 0, isp.size
    if warmup is not None:
        cy = cycles(log, warmup=warmup, require_full=require_full)
        if len(cy) == 0:
            return {
                "requests_per_s": float("nan"),
                "output_tokens_per_s": float("nan"),
                "total_time_s": 0.0,
                "completed": 0,
                "output_tokens": 0,
                "prefill_steps": 0,
                "decode_steps": 0,
                "mean_decode_batch": float("nan"),
                "window": None,
            }
        # the window opens at the refill prefill run just before the first kept phase
        pf = int(cy.start_step[0]) - 1
        while pf > 0 and isp[pf - 1]:
            pf -= 1
        lo, hi = pf, int(cy.end_step[-1]) + 1
    sl = slice(lo, hi)
    isp_w, batch_w, dur_w = isp[sl], batch[sl], dur[sl]
    t = float(dur_w.sum())
    done = int(fin[sl].sum())
    toks = int(batch_w.sum())  # prefill: one token per admitted; decode: one per request
    dec = ~isp_w
    return {
        "requests_per_s": done / t if t > 0 else float("nan"),
        "output_tokens_per_s": toks / t if t > 0 else float("nan"),
        "total_time_s": t,
        "completed": done,
        "output_tokens": toks,
        "prefill_steps": int(isp_w.sum()),
        "decode_steps": int(dec.sum()),
        "prefill_time_s": float(dur_w[isp_w].sum()),
        "decode_time_s": float(dur_w[dec].sum()),
        "mean_decode_batch": float(batch_w[dec].mean()) if dec.any() else float("nan"),
        "window": None if warmup is None else [lo, hi],
    }


def phase_timeline(log) -> list[tuple[str, float, float, int]]:
    """Consecutive steps of one phase merged: ``(phase, start_s, end_s, batch)`` with
    times from the summed step durations; batch = requests admitted (prefill) or the
    batch at the phase's first step (decode). For the pd_timeline JSON / Gantt plots."""
    a = _arrays(log)
    isp, batch, dur = a["is_prefill"], a["batch"], a["dur"]
    if isp.size == 0:
        return []
    change = np.nonzero(np.diff(isp.astype(np.int8)))[0] + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [isp.size]])
    t = np.concatenate([[0.0], np.cumsum(dur)])
    cum_b = np.concatenate([[0], np.cumsum(batch)])
    out = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        if isp[s]:
            out.append(("prefill", float(t[s]), float(t[e]), int(cum_b[e] - cum_b[s])))
        else:
            out.append(("decode", float(t[s]), float(t[e]), int(batch[s])))
    return out
