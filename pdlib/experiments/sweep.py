"""k* vs k_hat (notebook 02).

* ``k*`` — the theory's optimum (``theory.k_star``) from the fitted timing and offline p.
* ``k_hat`` — the empirically best fixed k of a sweep on the engine.
* gap % — ``100 * (thr(k_hat) - thr(k*)) / thr(k_hat)`` (>= 0: how much throughput the
  theory's choice leaves on the table on this engine).

Also the online run (``DynamicKStar``: EMA p, k* every ``kstar_update_interval``
completions, p0 from ``offline_p_multiplier * kstar_update_interval`` sampled outputs),
the simulator's predicted curve on the same workload, the theory's curve, truncated
samples, repetition-loop outputs (model termination) and the optional memory-bound N*.

Uncertainty (issue 14): p comes with its 95 % interval (t-interval of the mean output
length -> p = 1/mean) and k* with its range (k* at both ends of the p interval); each fixed-k
run also gets its steady-state requests/s with a 95 % interval (ratio batch means over
MSER-5 steady-state cycles); the length-aware k* (``theory.k_star_lengths`` on the paired
lengths) and the paper's validity flags (``theory.paper_validity``) stand beside it.
Which k are run (``k_search``: full sweep, spread, given list or the adaptive search of
``pdlib.experiments.search``, every run logged with why) and the throughput at k* and k_hat
with 95 % intervals over ``repeats`` paired runs, the gap's interval and its verdict against
``gap_threshold_pct`` (``search.gap_over_repeats``). ``kstar_experiment`` returns all of it as
a ``SweepResult``; its JSON keys beside the older ones: ``k_search`` (mode, runs in order with
reason, tied set, noise, budget), ``throughput_ci`` (k* and k_hat: values per repeat, means,
95 % intervals; the gap, its interval, threshold and verdict), ``gap_repeats_pct``,
``gap_repeats_ci`` and ``gap_verdict`` (copied from it for the index). ``gap_pct``,
``throughput_at_k_star`` and ``throughput_at_k_hat`` keep their meaning: the repeat-0 runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pdlib import metrics, theory, verdicts
from pdlib.experiments import profiling, search
from pdlib.experiments.result import LIVE, JsonResult
from pdlib.policy import DynamicKStar, FixedK


def sweep_ks(N: int, n_points: int = 6, include=()) -> list[int]:
    """A spread of refill sizes in 1..N-1 (plus ``include``, e.g. k*)."""
    hi = max(1, N - 1)
    ks = {round(float(x)) for x in np.linspace(1, hi, min(n_points, hi))}
    ks.update(int(k) for k in include if 1 <= int(k) <= hi)
    return sorted(ks)


def offline_p(workload, sample_size: int | None = None, seed: int = 0) -> dict:
    """``p = 1/mean(L)`` over a seeded sample of ``sample_size`` reference outputs (all when None)."""
    out = workload.output_lens
    if sample_size is not None and sample_size < len(out):
        rng = np.random.default_rng(seed)
        out = out[rng.choice(len(out), size=int(sample_size), replace=False)]
    iv = verdicts.p_interval(out)
    return {"p": theory.p_offline(out), "sample_size": len(out), "p_lo": iv["p_lo"], "p_hi": iv["p_hi"],
            "mean_output": iv["mean"], "mean_output_ci": [iv["mean_lo"], iv["mean_hi"]]}


def k_star_range(N: int, off: dict, timing, mu_L: float) -> dict:
    """k* at both ends of the p interval (``offline_p``): the uncertainty p's sample passes to k*."""
    ends = {}
    for key in ("p_lo", "p_hi"):
        ends[key] = pv = off.get(key)
        ends[f"k_star_at_{key}"] = (k_star_for(N, min(float(pv), 1.0), timing, mu_L)["k_star"]
                                    if pv is not None and np.isfinite(pv) else None)
    ks = [v for key, v in ends.items() if key.startswith("k_star") and v is not None]
    ends["k_star_min"], ends["k_star_max"] = (min(ks), max(ks)) if ks else (None, None)
    return ends


def k_star_from_workload(N: int, workload, timing, sample_size: int | None = None, seed: int = 0) -> dict:
    """k* from the workload's offline p (all outputs, or a sample) with p's 95 % interval and the
    k* range it implies (notebook 03's refill size when none is given)."""
    mu_L = float(workload.input_lens.mean())
    off = offline_p(workload, sample_size, seed)
    return {"k_star": k_star_for(N, off["p"], timing, mu_L)["k_star"], "p": off["p"], "p_lo": off["p_lo"],
            "p_hi": off["p_hi"], "sample_size": off["sample_size"], **k_star_range(N, off, timing, mu_L)}


def steady_throughput(result) -> dict:
    """Steady-state requests/s of one run with its 95 % interval: ratio batch means of
    (requests admitted, seconds) over the cycles MSER-5 keeps."""
    cy = metrics.cycles(result.log, warmup="mser")
    ci = verdicts.ratio_ci(cy.refill, cy.duration_s)
    return {"steady_requests_per_s": ci["mean"], "steady_requests_per_s_ci": [ci["lo"], ci["hi"]],
            "steady_requests_per_s_se": ci["se"],
            "steady_cycles": len(cy), "steady_state_found": not cy.warmup_info.get("at_limit", False)}


def k_star_for(N: int, p: float, timing, mu_L: float) -> dict:
    ks = theory.k_star(N, p, **timing.as_kwargs(), mu_L=mu_L)
    return {"k_star": ks.k, "fallback_used": ks.fallback_used, "theta": ks.theta,
            "theory_throughput_rps": ks.throughput,
            "theta_star_large_N": float(theory.theta_star(p, timing.alpha_p, timing.alpha_d))
            if timing.alpha_d > 0 else None}


def repetition_loop(ids, min_repeats: int = 4, max_period: int = 8, window: int = 32) -> bool:
    """True when the last ``window`` tokens are one pattern of period <= ``max_period``
    repeated at least ``min_repeats`` times (a degenerate repetition loop)."""
    if ids is None or len(ids) < window:
        return False
    tail = list(ids[-window:])
    for period in range(1, max_period + 1):
        if window // period < min_repeats:
            break
        if all(tail[i] == tail[i - period] for i in range(period, window)):
            return True
    return False


def degenerate_ids(result, termination: str) -> list[str]:
    """Requests whose output ended in a repetition loop; only meaningful with ``model``
    termination (under ``dataset`` termination lengths are the reference's)."""
    if termination != "model":
        return []
    return [str(r["id"]) for r in result.requests if repetition_loop(r.get("output_ids"))]


def throughput_of(result, exclude=()) -> dict:
    """Requests/s and output tokens/s over the run's summed step time, optionally
    leaving out some request ids (their time still counts)."""
    ex = set(map(str, exclude))
    t = result.total_time_s
    done = [r for r in result.requests if r.get("finish_step") is not None and str(r["id"]) not in ex]
    toks = sum(int(r["output_len"]) for r in done)
    return {"requests_per_s": len(done) / t if t > 0 else float("nan"),
            "output_tokens_per_s": toks / t if t > 0 else float("nan"),
            "total_time_s": t, "completed": len(done), "excluded": len(ex)}


def run_fixed(engine, workload, N: int, k: int, *, termination="dataset", max_tokens=None,
              exclude_degenerate=False):
    res = engine.run(workload, FixedK(N, int(k)), termination=termination, max_tokens=max_tokens)
    deg = degenerate_ids(res, termination)
    row = {"k": int(k), **throughput_of(res, deg if exclude_degenerate else ()),
           "degenerate": len(deg), "steps": len(res.log), **steady_throughput(res)}
    return row, res


def fixed_k_sweep(engine, workload, N: int, ks, *, termination="dataset", max_tokens=None,
                  exclude_degenerate=False, progress=None) -> tuple[list[dict], dict]:
    """Run every fixed k on the engine; returns the rows and {k: RunResult}."""
    rows, runs = [], {}
    it = ks if progress is None else progress(ks)
    for k in it:
        row, res = run_fixed(engine, workload, N, k, termination=termination, max_tokens=max_tokens,
                             exclude_degenerate=exclude_degenerate)
        rows.append(row)
        runs[int(k)] = res
    return rows, runs


def k_hat(rows: list[dict], key: str = "requests_per_s") -> int:
    """The empirically best fixed k (ties -> smallest k)."""
    best = max(rows, key=lambda r: (r[key], -r["k"]))
    return int(best["k"])


def gap_pct(thr_kstar: float, thr_khat: float) -> float:
    """``100 * (thr(k_hat) - thr(k*)) / thr(k_hat)``."""
    return 100.0 * (thr_khat - thr_kstar) / thr_khat


def online_run(engine, workload, N: int, timing, p0: float, *, mu_L: float, ema_alpha: float,
               update_interval: int, termination="dataset", max_tokens=None):
    """Dynamic k*: online EMA p from ``p0``; returns (RunResult, policy with ``history``)."""
    pol = DynamicKStar(N, timing, float(p0), ema_alpha=float(ema_alpha),
                       update_interval=int(update_interval), mu_L=float(mu_L))
    res = engine.run(workload, pol, termination=termination, max_tokens=max_tokens)
    return res, pol


def theory_curve(ks, N, p, timing, mu_L) -> list[float]:
    return [float(x) for x in np.atleast_1d(theory.throughput(np.asarray(ks), N, p, **timing.as_kwargs(),
                                                               mu_L=mu_L))]


def make_sim(timing, seed: int = 0):
    """The simulator (digital twin) with a fitted timing model."""
    from pdlib.engines import get_engine
    return get_engine("sim", timing=timing, seed=seed)


def sim_curve(timing, workload, N, ks, seed: int = 0) -> list[dict]:
    """The simulator's predicted throughput at each k on the same workload (its real lengths)."""
    rows, _ = fixed_k_sweep(make_sim(timing, seed), workload, N, ks)
    return rows


def is_sim_with(engine, timing) -> bool:
    """``engine`` is the simulator with this timing (to 1e-9): its repeat-0 runs *are* the
    simulator's curve (``SimEngine.run`` is deterministic); notebook 02 does not run them twice."""
    t = getattr(engine, "timing", None)
    a, b = (t.as_kwargs(), timing.as_kwargs()) if t is not None else ({}, {})
    return getattr(engine, "name", None) == "sim" and bool(a) and all(
        math.isclose(float(a[key]), float(b[key]), rel_tol=1e-9, abs_tol=0.0) for key in a)


def truncated_samples(workload, result=None) -> list[dict]:
    """Requests whose output was capped: by the loader's ``max_output_tokens`` or, under
    model termination, by ``max_tokens`` in the run."""
    out = [{"id": r.id, "source_id": r.source_id, "input_len": r.input_len, "output_len": r.output_len,
            "by": "max_output_tokens"} for r in workload.requests if r.truncated]
    if result is not None:
        out += [{"id": str(r["id"]), "input_len": r["input_len"], "output_len": r["output_len"], "by": "max_tokens"}
                for r in result.requests if r.get("truncated")]
    return out


def memory_bound_N(*, gpu_memory_gb: float, model_memory_gb: float, kv_cache_bytes: float, theta: float, p: float,
                   mu_L: float, var_L: float = 0.0, oom_tolerance: float = 0.01, p_range=None) -> dict:
    """Capacity ``C = (gpu - model) bytes / kv_cache_bytes`` tokens, ``N* = floor((C - nu ln(1/eps)) / D(theta))``
    (Prop. 3), the CLT form, and with ``p_range`` (p's 95 % interval) Prop. 3's N* at both ends (same theta)."""
    if model_memory_gb > gpu_memory_gb:
        raise ValueError(f"model_memory_gb ({model_memory_gb}) exceeds gpu_memory_gb ({gpu_memory_gb})")
    C = (gpu_memory_gb - model_memory_gb) * 1e9 / float(kv_cache_bytes)
    ends = sorted(int(theory.N_star_prop3(C, theta, q, mu_L, oom_tolerance)) for q in p_range) if p_range else None
    return {"capacity_tokens": C, "theta": theta, "oom_tolerance": oom_tolerance, "N_star_prop3_range": ends,
            "N_star_prop3": int(theory.N_star_prop3(C, theta, p, mu_L, oom_tolerance)),
            "N_star_clt": int(theory.N_star_clt(C, theta, p, mu_L, oom_tolerance, var_L))}


def timeline(result, max_steps: int | None = None) -> dict:
    """Phase timeline of one run: per step phase, batch, KV tokens, start time and duration."""
    c = result.log.columns
    n = len(c["step"]) if max_steps is None else min(max_steps, len(c["step"]))
    dur = np.asarray(c["duration_s"][:n], float)
    start = np.concatenate([[0.0], np.cumsum(dur)[:-1]]) if n else np.array([])
    return {"step": c["step"][:n], "phase": list(c["phase"][:n]), "batch_size": c["batch_size"][:n],
            "kv_tokens": c["kv_tokens"][:n], "k": c["k"][:n], "start_s": start, "duration_s": dur,
            "meta": result.meta}


@dataclass
class SweepResult(JsonResult):
    """Notebook 02's result; ``to_json()`` is the section ``kstar`` of ``{dataset}_results.json``
    (``online_result``, the online run's ``RunResult``, stays out of it; ``timeline()`` reads it)."""
    N: int
    ks: list
    termination: str
    max_tokens: int | None
    mu_L: float
    p_offline: float
    p_all: float
    offline_sample_size: int
    k_star: int                      # theory's k* for the fitted timing and offline p
    fallback_used: bool              # no k satisfied the condition: the authors' N//5
    theta: float
    theory_throughput_rps: float
    theta_star_large_N: float | None
    k_hat: int                       # best fixed k measured
    throughput_at_k_star: float
    throughput_at_k_hat: float
    gap_pct: float
    sweep: list                      # rows of the fixed-k sweep (requests/s, tokens/s, ...)
    sim: list | None                 # the simulator's rows at the same ks (None: not run)
    theory_curve: dict               # {"k": [...], "requests_per_s": [...]}
    online: dict                     # the online EMA run: throughput, final p and k, history
    timing: object                   # theory.TimingModel
    exclude_degenerate: bool
    degenerate_ids: list
    truncated: list
    engine_meta: dict
    k_hat_sim: int | None = None
    sim_error_pct: dict | None = None
    memory_bound: dict | None = None
    p_interval: dict | None = None        # offline p: p, p_lo, p_hi (95 %), mean output and its interval
    p_all_interval: dict | None = None    # the same over every request
    k_star_range: dict | None = None      # k* at both ends of the offline p interval
    k_star_lengths: dict | None = None    # theory.k_star_lengths on the paired lengths
    validity: dict | None = None          # {"paper": [...], "length_aware": [...]} (theory Validity dicts)
    requests: dict | None = None          # verdicts.request_counts: requested vs used
    k_search: dict | None = None          # search.KSearch.to_json: mode, every run in order with why, tied set
    throughput_ci: dict | None = None     # search.gap_over_repeats: k*, k_hat over repeats, gap CI, verdict
    gap_repeats_pct: float | None = None  # gap % from the means over the repeats (throughput_ci)
    gap_repeats_ci: list | None = None    # its 95 % interval
    gap_verdict: str | None = None        # pass / fail / inconclusive against throughput_ci's gap_threshold_pct
    fit_range: list | None = None         # profiling.fit_range_warnings: uses of the timing fit beyond its range
    online_result: object = field(default=None, repr=False, metadata=LIVE)

    OPTIONAL = ("k_hat_sim", "sim_error_pct", "memory_bound", "p_interval", "p_all_interval", "k_star_range",
                "k_star_lengths", "validity", "requests", "k_search", "throughput_ci", "gap_repeats_pct",
                "gap_repeats_ci", "gap_verdict",
                "fit_range")

    def timeline(self, max_steps: int | None = None) -> dict:
        """Phase timeline of the online run (see ``timeline``)."""
        return timeline(self.online_result, max_steps)

    def k_range(self) -> tuple | None:
        """(k* at one end of p's 95 % interval, k* at the other), smallest first."""
        r = self.k_star_range or {}
        return (r["k_star_min"], r["k_star_max"]) if r.get("k_star_min") is not None else None

    def p_range(self) -> tuple | None:
        """The 95 % interval of the offline p."""
        r = self.p_interval or {}
        return (r["p_lo"], r["p_hi"]) if r.get("p_lo") is not None else None


def kstar_experiment(engine, workload, timing, *, N: int, ks=None, n_points: int = 6, ema_alpha: float = 0.05,
                     kstar_update_interval: int = 16, offline_p_multiplier: int = 4, termination: str = "dataset",
                     max_tokens=None, exclude_degenerate: bool = False, with_sim: bool = True, seed: int = 0,
                     memory: dict | None = None, progress=None, requested: int | None = None,
                     with_lengths: bool = True, k_search: str = "auto", repeats: int = 3,
                     repeat_order: str = "auto", max_runs: int | None = None, max_repeats: int = 3,
                     gap_threshold_pct: float = search.GAP_THRESHOLD_PCT) -> SweepResult:
    """Everything notebook 02 reports, from one engine and one workload:
    offline p (sample of ``offline_p_multiplier * kstar_update_interval``), k*, the fixed-k
    runs (``k_search``, see ``pdlib.experiments.search``; k* always run), k_hat, the throughput
    at k* and k_hat over ``repeats`` paired runs with 95 % intervals, gap % with its interval and
    verdict, the online EMA run, the simulator's and the theory's curves, truncated samples,
    repetition loops and (``memory``) the memory-bound N*.

    ``sweep`` holds the repeat-0 row of every k run; ``gap_pct`` and the throughputs at k* and
    k_hat are those rows' (as before); the over-repeats figures are in ``throughput_ci``."""
    mu_L = float(workload.input_lens.mean())
    off = offline_p(workload, offline_p_multiplier * kstar_update_interval, seed)
    ks_info = k_star_for(N, off["p"], timing, mu_L)
    kstar = ks_info["k_star"]
    kl = None
    if with_lengths:
        I, L = workload.paired_lengths()
        r = theory.k_star_lengths(N, **timing.as_kwargs(), input_lens=I, output_lens=L)
        kl = {"k": r.k, "throughput_rps": r.throughput, "paper_k": r.paper_k, "paper_fallback_used": r.paper_fallback_used,
              "throughput_at_paper_k_rps": r.throughput_at_paper_k, "curve": list(r.curve),
              "validity": [v.to_dict() for v in r.validity]}
    search.check_options(N=N, repeats=repeats, max_repeats=max_repeats, max_runs=max_runs,
                         gap_threshold_pct=gap_threshold_pct)
    mode = search.resolve_mode(k_search, N, ks)
    order = search.resolve_order(repeat_order, getattr(engine, "name", None))
    deg_ids, kept = set(), {}

    def evaluate(k, r):
        row, res = run_fixed(engine, search.repeat_workload(workload, seed, r, order), N, k, termination=termination,
                             max_tokens=max_tokens, exclude_degenerate=exclude_degenerate)
        deg_ids.update(degenerate_ids(res, termination))
        if r == 0 and k == kstar:
            kept[k] = res
        return row

    ksr = search.KSearch(evaluate, N, max_runs=max_runs, max_repeats=max_repeats)
    extra_k = [kstar] + ([kl["k"]] if kl else [])
    if mode == "adaptive":
        ksr.adaptive({"seed k*": kstar, **({"seed k* length-aware": kl["k"]} if kl else {})})
    else:
        todo = (range(1, N) if mode == "full" else sorted({int(k) for k in ks} | set(extra_k)) if mode == "list"
                else sweep_ks(N, n_points, include=extra_k))
        ksr.sweep(todo if progress is None else progress(todo), {"full": "full sweep", "list": "given ks"}.get(
            mode, f"spread of {n_points} (+ k*)"))
    khat = ksr.best()[0]
    search_js = ksr.to_json(mode, order)
    gap = search.gap_over_repeats(ksr, kstar, khat, repeats, gap_threshold_pct)
    gap["repeat_order"] = order
    search_js.update(runs=list(ksr.log), total_runs=len(ksr.log), per_k=ksr.per_k())
    ks = sorted({k for k, _ in ksr.rows})
    rows = [ksr.rows[(k, 0)] for k in ks]
    by_k = {r["k"]: r for r in rows}
    on_res, pol = online_run(engine, workload, N, timing, off["p"], mu_L=mu_L, ema_alpha=ema_alpha,
                             update_interval=kstar_update_interval, termination=termination, max_tokens=max_tokens)
    on_deg = degenerate_ids(on_res, termination)
    online = {**throughput_of(on_res, on_deg if exclude_degenerate else ()), "final_p": pol.p, "final_k": pol.k,
              "history": [list(h) for h in pol.history], "ema_alpha": ema_alpha,
              "kstar_update_interval": kstar_update_interval,
              "offline_sample_size": off["sample_size"], "degenerate": len(on_deg)}
    same = is_sim_with(engine, timing) and search.repeat_workload(workload, seed, 0, order) is workload
    sim_rows = None if not with_sim else [dict(r) for r in rows] if same else sim_curve(timing, workload, N, ks, seed)
    p_all = theory.p_offline(workload.output_lens)
    extra = {"p_interval": {key: off[key] for key in ("p", "p_lo", "p_hi", "sample_size", "mean_output",
                                                        "mean_output_ci")},
             "p_all_interval": verdicts.p_interval(workload.output_lens),
             "k_star_range": k_star_range(N, off, timing, mu_L),
             "requests": verdicts.request_counts(requested, len(workload), getattr(workload, "meta", None)),
             "fit_range": profiling.fit_range_warnings(timing, workload, N, ks)}
    paper_v = theory.paper_validity(N, off["p"], mu_L, *workload.paired_lengths())
    extra["validity"] = {"paper": [v.to_dict() for v in paper_v], "length_aware": kl["validity"] if kl else None}
    if kl is not None:
        if kl["k"] in by_k:
            kl["measured_requests_per_s"] = by_k[kl["k"]]["requests_per_s"]
        extra["k_star_lengths"] = kl
    th = {"k": list(range(1, N)), "requests_per_s": theory_curve(list(range(1, N)), N, p_all, timing, mu_L)}
    if sim_rows:
        sim_by_k = {r["k"]: r["requests_per_s"] for r in sim_rows}
        extra["k_hat_sim"] = k_hat(sim_rows)
        extra["sim_error_pct"] = {int(k): 100.0 * (sim_by_k[k] - by_k[k]["requests_per_s"]) / by_k[k]["requests_per_s"]
                                  for k in ks}
    if memory:
        extra["memory_bound"] = memory_bound_N(theta=kstar / N, p=off["p"], mu_L=mu_L, var_L=float(workload.input_lens.var()),
                                               p_range=(off["p_lo"], off["p_hi"]), **memory)
    return SweepResult(
        N=N, ks=ks, termination=termination, max_tokens=max_tokens, mu_L=mu_L, p_offline=off["p"], p_all=p_all,
        offline_sample_size=off["sample_size"], **ks_info, k_hat=khat,
        throughput_at_k_star=by_k[kstar]["requests_per_s"], throughput_at_k_hat=by_k[khat]["requests_per_s"],
        gap_pct=gap_pct(by_k[kstar]["requests_per_s"], by_k[khat]["requests_per_s"]), sweep=rows, sim=sim_rows, theory_curve=th, online=online, timing=timing,
        exclude_degenerate=exclude_degenerate, degenerate_ids=sorted(deg_ids),
        truncated=truncated_samples(workload, kept.get(kstar)), engine_meta=kept[kstar].meta if kstar in kept else {},
        online_result=on_res, k_search=search_js, throughput_ci=gap, gap_repeats_pct=gap["gap_pct"],
        gap_repeats_ci=gap["gap_ci"], gap_verdict=gap["gap_verdict"], **extra)
