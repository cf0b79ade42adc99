"""Memory cycles (notebook 03): X0, Xmax, sup Y in KV tokens per cycle, against the theory.

A *cycle* is one refill prefill (one or more prefill steps) and the decode phase that follows
it. ``X0`` = KV tokens held when the decode phase starts (after the prefill), ``Xmax`` = the
peak during it, ``sup Y = Xmax - X0``. Cycles are cut by ``pdlib.metrics.cycles`` (the one implementation):
only steady-state cycles count, i.e. the decode phase starts with the full batch N, is
followed by a prefill (the final drain is dropped), and is not among the first ``warmup``
cycles. ``warmup="auto"`` (default) is metrics' rule: ``ceil(ln 1e-3 / ln(1 - theta_hat))``
cycles, enough for the initial cohort's bias on X0 to fall under 0.1 %; an int drops that
many cycles (small runs, e.g. the default grid's 16 requests, need a small int).

Theory (``pdlib.theory``): ``E[X0] = N*D(theta)``, ``kappa = 1/(p^2 mu_L)``,
``E[Xmax] ~ E[X0] + kappa``, ``P(sup Y > x) <= exp(-2|d|x/v)``. The seed's thresholds:
X0 error < 10 %, Xmax < 15 %, kappa < 20 %, bound valid at >= 90 % of the x grid.

Gap attribution (DESIGN "Reading the gaps"): theory -> simulator with geometric lengths
(algebra) -> simulator with the run's real lengths (distribution) -> engine in tokens
(policy fidelity) -> engine in bytes (hardware: block rounding, non-KV bytes).
``memory_experiment`` returns all of it as a ``MemoryCyclesResult``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pdlib import metrics, theory
from pdlib.experiments.result import LIVE, jsonable
from pdlib.experiments.sweep import make_sim, theory_curve, throughput_of
from pdlib.policy import FixedK
from pdlib.workload import Workload

THRESHOLDS = {"X0": 10.0, "Xmax": 15.0, "kappa": 20.0, "bound_valid": 90.0}


def cycles(log, N: int | None = None, *, warmup="auto", column: str = "kv_tokens") -> pd.DataFrame:
    """Per-cycle X0, Xmax, supY (in ``column`` units) from a step log: ``metrics.cycles``
    (the one cycle cutter) as a DataFrame.

    Columns: ``start_step``, ``end_step``, ``X0``, ``Xmax``, ``supY``, ``decode_steps``,
    ``k`` (requests admitted by the refill prefill(s) before the phase), ``duration_s``.
    ``warmup`` is ``metrics.cycles``' (cycles dropped at the start). ``N``, when given, is
    the batch a kept cycle must start with (no cycles if the log never reaches it)."""
    cy = metrics.cycles(log, warmup=warmup, require_full=True, column=column)
    df = cy.frame().rename(columns={"refill": "k"})
    if N is not None and cy.N != N:
        df = df.iloc[:0]
    return df


def theory_memory(N: int, k: int, p: float, mu_L: float, var_L: float = 0.0) -> dict:
    """``theory.memory_model`` with its inputs alongside."""
    return {"N": N, "k": k, "p": p, "mu_L": mu_L, "var_L": var_L, **theory.memory_model(N, k, p, mu_L, var_L)}


def err_pct(measured: float, predicted: float) -> float:
    return 100.0 * abs(measured - predicted) / abs(predicted) if predicted else float("nan")


def tail(supY, xs) -> np.ndarray:
    """Empirical P(sup Y > x) at each x."""
    s = np.sort(np.asarray(supY, float))
    return 1.0 - np.searchsorted(s, np.asarray(xs, float), side="right") / max(len(s), 1)


def bound_check(supY, drift: float, variance: float, n_points: int = 50) -> dict:
    """OOM bound ``exp(-2|d|x/v)`` vs the empirical tail on a grid x in [0, max sup Y]:
    the fraction (%) of grid points where the bound holds."""
    supY = np.asarray(supY, float)
    hi = float(supY.max()) if supY.size and supY.max() > 0 else 1.0
    xs = np.linspace(0.0, hi, n_points)
    emp = tail(supY, xs)
    bnd = np.asarray(theory.oom_bound(xs, drift, variance))
    return {"x": xs, "empirical": emp, "bound": bnd, "valid_pct": 100.0 * float(np.mean(emp <= bnd + 1e-12))}


def validate(cyc: pd.DataFrame, th: dict) -> dict:
    """Measured means, errors (%) vs theory and pass/fail against the seed's thresholds."""
    if len(cyc) == 0:
        raise ValueError("no steady-state cycles: run more requests (num_requests >> N) or lower warmup")
    meas = {"X0": float(cyc["X0"].mean()), "Xmax": float(cyc["Xmax"].mean()), "supY": float(cyc["supY"].mean())}
    errors = {"X0": err_pct(meas["X0"], th["E_X0"]), "Xmax": err_pct(meas["Xmax"], th["E_Xmax"]),
              "kappa": err_pct(meas["supY"], th["kappa"])}
    b = bound_check(cyc["supY"], th["drift"], th["variance"])
    passed = {"X0": errors["X0"] < THRESHOLDS["X0"], "Xmax": errors["Xmax"] < THRESHOLDS["Xmax"],
              "kappa": errors["kappa"] < THRESHOLDS["kappa"], "bound_valid": b["valid_pct"] >= THRESHOLDS["bound_valid"]}
    return {"cycles": len(cyc), "measured": meas, "errors_pct": errors, "bound_valid_pct": b["valid_pct"],
            "bound": b, "thresholds": THRESHOLDS, "pass": passed, "all_pass": all(passed.values())}


def lengths_workload(result, name="run-lengths") -> Workload:
    """A length-only workload with the run's actual (input, output) lengths, in order."""
    reqs = result.requests          # engines return requests in workload (queue) order
    return Workload.from_lengths(name, [r["input_len"] for r in reqs], [max(1, int(r["output_len"])) for r in reqs])


def geometric_workload(input_lens, p: float, n: int, seed: int = 0) -> Workload:
    """Monte Carlo workload: inputs resampled from ``input_lens``, outputs Geometric(p) (mean 1/p)."""
    rng = np.random.default_rng(seed)
    inp = rng.choice(np.asarray(input_lens), size=n, replace=True)
    return Workload.from_lengths("geometric", inp, rng.geometric(p, size=n))


def formula_audit(th: dict, sim_geo: dict, measured: dict) -> pd.DataFrame:
    """E[X0]: seed 000's printed (1-theta)^2 form vs the corrected (1-theta) form vs Monte
    Carlo (simulator, geometric outputs) vs the engine's measured mean, with errors vs MC."""
    mc = sim_geo["X0"]
    rows = [("seed 000 printed (1-theta)^2", th["E_X0_seed000_misprint"]),
            ("corrected (1-theta)", th["E_X0"]),
            ("Monte Carlo (sim, geometric)", mc),
            ("measured (engine, KV tokens)", measured["X0"])]
    return pd.DataFrame([{"source": s, "E_X0_tokens": v, "vs_monte_carlo_pct": 100.0 * (v - mc) / mc}
                         for s, v in rows])


def _summ(cyc) -> dict:
    if len(cyc) == 0:
        return {"X0": float("nan"), "Xmax": float("nan"), "supY": float("nan"), "cycles": 0}
    return {"X0": float(cyc["X0"].mean()), "Xmax": float(cyc["Xmax"].mean()),
            "supY": float(cyc["supY"].mean()), "cycles": len(cyc)}


def gap_attribution(th: dict, sim_geo: dict, sim_real: dict, eng_tok: dict, eng_bytes: dict | None,
                    thr: dict | None = None) -> pd.DataFrame:
    """One row per level (theory, sim-geometric, sim-real-lengths, engine tokens, engine bytes)
    with mean X0 / Xmax / supY in KV tokens and the step from the previous level (%), labelled
    with the cause it isolates. ``thr`` optionally adds requests/s per level."""
    levels = [("theory", "—", {"X0": th["E_X0"], "Xmax": th["E_Xmax"], "supY": th["kappa"]}),
              ("sim, geometric lengths", "algebra (approximations in the formulas)", sim_geo),
              ("sim, real lengths", "distribution (lengths not geometric)", sim_real),
              ("engine, KV tokens", "policy fidelity (engine vs its twin)", eng_tok)]
    if eng_bytes is not None:
        levels.append(("engine, KV bytes / bytes-per-token", "hardware (block rounding, non-KV bytes)", eng_bytes))
    rows, prev = [], None
    for name, cause, v in levels:
        row = {"level": name, "gap_cause": cause, "X0": v["X0"], "Xmax": v["Xmax"], "supY": v["supY"]}
        for key in ("X0", "Xmax", "supY"):
            row[f"{key}_step_pct"] = (100.0 * (v[key] - prev[key]) / prev[key]
                                      if prev is not None and prev[key] else float("nan"))
        if thr is not None:
            row["requests_per_s"] = thr.get(name, float("nan"))
        rows.append(row)
        prev = v
    return pd.DataFrame(rows)


@dataclass
class MemoryCyclesResult:
    """Notebook 03's result: the run, its steady-state cycles against the theory and the
    simulator, the formula audit and the gap attribution. ``to_json()`` is the section
    ``memory`` of ``{dataset}_results.json``; the frames and the run stay out of it."""
    theory: dict                     # theory_memory(N, k, p, mu_L, var_L)
    validation: dict                 # validate(cycles, theory): measured, errors, pass, bound
    sim_geometric: dict              # mean X0 / Xmax / supY, cycles (simulator, geometric outputs)
    sim_real: dict                   # ... (simulator, the run's real lengths)
    engine_tokens: dict              # ... (engine, KV tokens)
    engine_bytes: dict | None        # ... (engine, KV bytes / bytes per token); None: no bytes
    errors_vs_sim_pct: dict
    run: object = field(default=None, repr=False, metadata=LIVE)                 # the engine's RunResult
    cycles: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)        # engine cycles (KV tokens)
    sim_cycles: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)    # simulator cycles, real lengths
    audit: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)         # formula_audit
    attribution: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)   # gap_attribution

    @property
    def bound(self) -> dict:
        """The OOM bound against the empirical tail of sup Y (``bound_check``)."""
        return self.validation["bound"]

    def to_json(self) -> dict:
        val = self.validation
        return jsonable({
            "theory": self.theory, "cycles": val["cycles"], "measured": val["measured"],
            "errors_pct": val["errors_pct"], "bound_valid_pct": val["bound_valid_pct"],
            "thresholds": val["thresholds"], "pass": val["pass"], "all_pass": val["all_pass"],
            "errors_vs_sim_pct": self.errors_vs_sim_pct, "sim_geometric": self.sim_geometric,
            "sim_real": self.sim_real, "engine_tokens": self.engine_tokens, "engine_bytes": self.engine_bytes,
            "formula_audit": self.audit.to_dict(orient="records"),
            "attribution": self.attribution.to_dict(orient="records"),
            "engine_meta": self.run.meta})


def memory_experiment(engine, workload, *, N: int, k: int, timing, kv_bytes_per_token: int | None = None,
                      termination: str = "dataset", max_tokens=None, warmup="auto", mc_requests: int = 20000,
                      seed: int = 0) -> MemoryCyclesResult:
    """Run fixed k on the engine, cut cycles, compare with the theory, the simulator (geometric
    and real lengths) and the engine's bytes."""
    run = engine.run(workload, FixedK(N, int(k)), termination=termination, max_tokens=max_tokens)
    outs = np.array([max(1, int(r["output_len"])) for r in run.requests], float)
    inps = np.array([r["input_len"] for r in run.requests], float)
    p, mu_L, var_L = float(1.0 / outs.mean()), float(inps.mean()), float(inps.var())
    th = theory_memory(N, int(k), p, mu_L, var_L)
    cyc = cycles(run.log, N, warmup=warmup)
    val = validate(cyc, th)

    sim = make_sim(timing, seed)
    geo_run = sim.run(geometric_workload(inps, p, mc_requests, seed), FixedK(N, int(k)))
    real_run = sim.run(lengths_workload(run), FixedK(N, int(k)))
    sim_geo = _summ(cycles(geo_run.log, N, warmup=warmup))
    sim_real_cyc = cycles(real_run.log, N, warmup=warmup)
    sim_real = _summ(sim_real_cyc)
    eng_tok = _summ(cyc)
    eng_bytes = None
    kvb = np.asarray(run.log["kv_bytes"], float)
    if kv_bytes_per_token and np.isfinite(kvb).all() and kvb.size:
        cyc_b = cycles(run.log, N, warmup=warmup, column="kv_bytes")
        cyc_b[["X0", "Xmax", "supY"]] /= float(kv_bytes_per_token)
        eng_bytes = _summ(cyc_b)
    thr = {"theory": theory_curve([int(k)], N, p, timing, mu_L)[0],
           "sim, geometric lengths": throughput_of(geo_run)["requests_per_s"],
           "sim, real lengths": throughput_of(real_run)["requests_per_s"],
           "engine, KV tokens": throughput_of(run)["requests_per_s"]}
    vs_sim = {key: err_pct(eng_tok[key], sim_real[key]) for key in ("X0", "Xmax", "supY")}
    return MemoryCyclesResult(
        theory=th, validation=val, sim_geometric=sim_geo, sim_real=sim_real, engine_tokens=eng_tok,
        engine_bytes=eng_bytes, errors_vs_sim_pct=vs_sim, run=run, cycles=cyc, sim_cycles=sim_real_cyc,
        audit=formula_audit(th, sim_geo, val["measured"]),
        attribution=gap_attribution(th, sim_geo, sim_real, eng_tok, eng_bytes, thr))
