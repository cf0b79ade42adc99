"""Memory cycles (notebook 03): X0, Xmax, sup Y in KV tokens per cycle, against the theory.

A *cycle* is one refill prefill (one or more prefill steps) and the decode phase that follows
it. ``X0`` = KV tokens held when the decode phase starts (after the prefill), ``Xmax`` = the
peak during it, ``sup Y = Xmax - X0``. Cycles are cut by ``pdlib.metrics.cycles`` (the one implementation):
only steady-state cycles count, i.e. the decode phase starts with the full batch N, is
followed by a prefill (the final drain is dropped), and is not among the first ``warmup``
cycles. ``warmup="auto"`` (default) is metrics' rule: ``ceil(ln 1e-3 / ln(1 - theta_hat))``
cycles, enough for the initial cohort's bias on X0 to fall under 0.1 %; an int drops that
many cycles (small runs, e.g. the default grid's 16 requests, need a small int).
``warmup="auto"`` here is MSER-5 on the X0 series (``metrics.cycles(warmup="mser")``: works for
heavy tails, where the geometric rule keeps cycles in which X0 is still climbing);
``"geometric"`` is metrics' old geometric rule. How many cycles were dropped and why is in
``warmup``.

Errors are signed, ``100 * (prediction/measured - 1)``, each with a 95 % interval from the
batch-means interval of the measured mean (``pdlib.verdicts``); a verdict per quantity is
"pass" only when the whole interval lies inside the threshold, "fail" when wholly outside,
"inconclusive" otherwise. The length-aware model (``theory.memory_model_lengths`` with the
run's paired lengths) stands beside the paper's formulas, with its validity flags.

Theory (``pdlib.theory``): ``E[X0] = N*D(theta)``, ``kappa = 1/(p^2 mu_L)``,
``E[Xmax] ~ E[X0] + kappa``, ``P(sup Y > x) <= exp(-2|d|x/v)``. The seed's thresholds:
X0 error < 10 %, Xmax < 15 %, kappa < 20 % (now: the whole 95 % interval of the signed error inside
+-threshold), bound valid at >= 90 % of the x grid (the Wilson interval of that percentage >= 90).

Gap attribution (DESIGN "Reading the gaps"): theory -> simulator with geometric lengths
(algebra) -> simulator with the run's real lengths (distribution) -> engine in tokens
(policy fidelity) -> engine in bytes (hardware: block rounding, non-KV bytes).
``memory_experiment`` returns all of it as a ``MemoryCyclesResult``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pdlib import metrics, theory, verdicts
from pdlib.experiments.result import LIVE, jsonable
from pdlib.experiments.sweep import make_sim, theory_curve, throughput_of
from pdlib.policy import FixedK
from pdlib.workload import Workload

THRESHOLDS = {"X0": 10.0, "Xmax": 15.0, "kappa": 20.0, "bound_valid": 90.0}
ERROR_DEFINITION = "100 * (prediction / measured - 1): > 0 the prediction is high"
_RULES = {"auto": "mser", "mser": "mser", "geometric": "auto"}


def cycles(log, N: int | None = None, *, warmup="auto", column: str = "kv_tokens") -> pd.DataFrame:
    """Per-cycle X0, Xmax, supY (in ``column`` units) from a step log: ``metrics.cycles``
    (the one cycle cutter) as a DataFrame.

    Columns: ``start_step``, ``end_step``, ``X0``, ``Xmax``, ``supY``, ``decode_steps``,
    ``k`` (requests admitted by the refill prefill(s) before the phase), ``duration_s``.
    ``warmup`` is ``metrics.cycles``' (cycles dropped at the start). ``N``, when given, is
    the batch a kept cycle must start with (no cycles if the log never reaches it)."""
    cy = metrics.cycles(log, warmup=_RULES.get(warmup, warmup) if isinstance(warmup, str) else warmup,
                        require_full=True, column=column)
    df = cy.frame().rename(columns={"refill": "k"})
    if N is not None and cy.N != N:
        df = df.iloc[:0]
    other = max(cy.total - cy.warmup - len(df), 0)
    df.attrs["warmup"] = {**cy.warmup_info, "total_cycles": cy.total, "kept_cycles": len(df), "excluded_other": other,
                          "excluded_other_reason": "decode phase not starting with the full batch N, or not "
                                                   "followed by a prefill (the final drain)"}
    return df


def theory_memory(N: int, k: int, p: float, mu_L: float, var_L: float = 0.0) -> dict:
    """``theory.memory_model`` with its inputs alongside."""
    return {"N": N, "k": k, "p": p, "mu_L": mu_L, "var_L": var_L, **theory.memory_model(N, k, p, mu_L, var_L)}


def err_pct(measured: float, predicted: float) -> float:
    """Signed error ``100 * (predicted/measured - 1)`` (``verdicts.signed_error_pct``)."""
    return verdicts.signed_error_pct(predicted, measured)


def cis(cyc) -> dict:
    """95 % batch-means intervals of mean X0 / Xmax / supY over the cycles."""
    return {q: verdicts.batch_means_ci(np.asarray(cyc[q], float)) for q in ("X0", "Xmax", "supY")}


def compare(pred: dict, ci: dict, pairs, pred_ci: dict | None = None) -> dict:
    """For each ``(name, prediction key, measured key, threshold key)``: signed error (%), its
    95 % interval and the verdict against ``THRESHOLDS``."""
    err, iv, ver = {}, {}, {}
    for name, pk, mk, tk in pairs:
        e = verdicts.error_interval(pred[pk], ci[mk], (pred_ci or {}).get(pk))
        err[name], iv[name] = e["error_pct"], [e["lo"], e["hi"]]
        ver[name] = verdicts.verdict(e["lo"], e["hi"], THRESHOLDS[tk])
    return {"errors_pct": err, "errors_ci_pct": iv, "verdicts": ver}


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
    lo, hi = verdicts.wilson(emp * supY.size, supY.size)
    return {"x": xs, "empirical": emp, "bound": bnd, "valid_pct": 100.0 * float(np.mean(emp <= bnd + 1e-12)),
            # 95 % Wilson interval of the tail at each x (cycles taken as independent): the bound
            # surely holds where the upper end is below it, possibly where the lower end is
            "valid_pct_lo": 100.0 * float(np.mean(hi <= bnd + 1e-12)),
            "valid_pct_hi": 100.0 * float(np.mean(lo <= bnd + 1e-12))}


PAPER_PAIRS = (("X0", "E_X0", "X0", "X0"), ("Xmax", "E_Xmax", "Xmax", "Xmax"), ("kappa", "kappa", "supY", "kappa"))
LENGTHS_PAIRS = (("X0", "E_X0", "X0", "X0"), ("Xmax", "E_Xmax", "Xmax", "Xmax"), ("supY", "E_supY", "supY", "kappa"))


def validate(cyc: pd.DataFrame, th: dict) -> dict:
    """Measured means with 95 % intervals, signed errors (%) of the theory with their intervals,
    and a verdict per quantity against the seed's thresholds (``pass`` = verdict "pass")."""
    if len(cyc) == 0:
        raise ValueError("no steady-state cycles: run more requests (num_requests >> N) or lower warmup")
    ci = cis(cyc)
    meas = {q: ci[q]["mean"] for q in ci}
    cmp = compare(th, ci, PAPER_PAIRS)
    b = bound_check(cyc["supY"], th["drift"], th["variance"])
    cmp["verdicts"]["bound_valid"] = verdicts.verdict_at_least(b["valid_pct_lo"], b["valid_pct_hi"],
                                                               THRESHOLDS["bound_valid"])
    note = None
    if (cyc.attrs.get("warmup") or {}).get("at_limit"):
        note = ("no steady state found (MSER-5's minimum at n/2: X0 still drifting): the intervals do not describe "
                "a steady-state mean, every verdict is inconclusive — run more requests")
        cmp["verdicts"] = {q: "inconclusive" for q in cmp["verdicts"]}
    passed = {q: v == "pass" for q, v in cmp["verdicts"].items()}
    return {"cycles": len(cyc), "verdict_note": note, "measured": meas, "measured_ci": {q: [ci[q]["lo"], ci[q]["hi"]] for q in ci},
            **cmp, "bound_valid_pct": b["valid_pct"],
            "bound_valid_ci_pct": [b["valid_pct_lo"], b["valid_pct_hi"]], "bound": b, "thresholds": THRESHOLDS,
            "pass": passed, "all_pass": all(passed.values()), "error_definition": ERROR_DEFINITION}


def length_aware(N: int, k: int, inps, outs, ci: dict, seed: int = 0, steady: bool = True) -> dict:
    """``theory.memory_model_lengths`` with the run's paired lengths, against the engine's
    cycles (signed errors, intervals, verdicts; all "inconclusive" when not ``steady``) with
    its validity flags and the paper's."""
    m = theory.memory_model_lengths(int(N), int(k), np.asarray(inps), np.asarray(outs), seed=seed)
    pred = {"E_X0": m.E_X0, "E_Xmax": m.E_Xmax, "E_supY": m.E_supY}
    h = verdicts.Z95 * m.se_supY
    pred_ci = {key: {"lo": pred[key] - h, "hi": pred[key] + h} for key in ("E_Xmax", "E_supY")}
    cmp = compare(pred, ci, LENGTHS_PAIRS, pred_ci)
    if not steady:
        cmp["verdicts"] = {q: "inconclusive" for q in cmp["verdicts"]}
    return {**pred, "se_supY": m.se_supY, "E_T": m.E_T, "E_K": m.E_K, "source": m.source, **cmp,
            "validity": [v.to_dict() for v in m.validity], "paper_validity": [v.to_dict() for v in m.paper_validity]}


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
    """Mean X0 / Xmax / supY with 95 % intervals (``ci``), kept cycles and the warm-up rule."""
    nan = float("nan")
    if len(cyc) == 0:
        return {"X0": nan, "Xmax": nan, "supY": nan, "cycles": 0, "ci": None, "warmup": cyc.attrs.get("warmup")}
    ci = cis(cyc)
    return {**{q: ci[q]["mean"] for q in ci}, "cycles": len(cyc), "ci": {q: [ci[q]["lo"], ci[q]["hi"]] for q in ci},
            "warmup": cyc.attrs.get("warmup")}


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
    validation: dict                 # validate(cycles, theory): measured, signed errors, CIs, verdicts, bound
    sim_geometric: dict              # mean X0 / Xmax / supY, CIs, cycles (simulator, geometric outputs)
    sim_real: dict                   # ... (simulator, the run's real lengths)
    engine_tokens: dict              # ... (engine, KV tokens)
    engine_bytes: dict | None        # ... (engine, KV bytes / bytes per token); None: no bytes
    errors_vs_sim_pct: dict          # signed: 100 * (sim real lengths / engine tokens - 1)
    length_aware: dict | None = None  # length_aware(): the length-aware model vs the engine
    engine_bytes_note: str | None = None
    requests: dict | None = None     # verdicts.request_counts: requested vs used
    k_choice: dict | None = None     # how k was chosen (``choose_k``: rule, p, its CI, k* range), or None
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
        la = self.length_aware or {}
        return jsonable({
            "theory": self.theory, "cycles": val["cycles"], "measured": val["measured"],
            "errors_pct": val["errors_pct"], "bound_valid_pct": val["bound_valid_pct"],
            "thresholds": val["thresholds"], "pass": val["pass"], "all_pass": val["all_pass"],
            "errors_vs_sim_pct": self.errors_vs_sim_pct, "sim_geometric": self.sim_geometric,
            "sim_real": self.sim_real, "engine_tokens": self.engine_tokens, "engine_bytes": self.engine_bytes,
            "formula_audit": self.audit.to_dict(orient="records"),
            "attribution": self.attribution.to_dict(orient="records"),
            "engine_meta": self.run.meta,
            # issue 14: signed errors with 95 % intervals, verdicts, warm-up, length-aware model, validity
            "error_definition": val["error_definition"], "measured_ci": val["measured_ci"],
            "errors_ci_pct": val["errors_ci_pct"], "verdicts": val["verdicts"],
            "bound_valid_ci_pct": val["bound_valid_ci_pct"], "warmup": self.engine_tokens.get("warmup"),
            "verdict_note": val.get("verdict_note"),
            "length_aware": self.length_aware, "engine_bytes_note": self.engine_bytes_note,
            "validity": {"paper": la.get("paper_validity"), "length_aware": la.get("validity")},
            "requests": self.requests, "k_choice": self.k_choice})


#: ``choose_k`` rules: the paper's k* from the offline p, or the length-aware model's k*
K_RULES = ("paper", "lengths")


def choose_k(N: int, workload, timing, rule: str = "paper") -> dict:
    """Notebook 03's refill size when none is given, with how it was chosen. Always the paper's k*
    from the workload's offline p with p's 95 % interval and the k* range it implies
    (``sweep.k_star_from_workload``); ``rule="lengths"`` runs at ``theory.k_star_lengths`` on the
    workload's pairs instead (the k the length-aware throughput model puts at the optimum; near N
    the paper's k* leaves a 5,000-request run few refill cycles), the paper's k* kept as
    ``paper_k_star``."""
    from pdlib.experiments import sweep
    if rule not in K_RULES:
        raise ValueError(f"k_rule must be one of {K_RULES}, got {rule!r}")
    kc = dict(sweep.k_star_from_workload(N, workload, timing), rule=rule, paper_k_star=None)
    if rule == "lengths":
        I, L = workload.paired_lengths()
        r = theory.k_star_lengths(N, **timing.as_kwargs(), input_lens=I, output_lens=L)
        kc.update(paper_k_star=kc["k_star"], k_star=int(r.k))
    return kc


def memory_experiment(engine, workload, *, N: int, k: int, timing, kv_bytes_per_token: int | None = None,
                      termination: str = "dataset", max_tokens=None, warmup="auto", mc_requests: int = 20000,
                      seed: int = 0, requested: int | None = None, with_lengths: bool = True,
                      k_choice: dict | None = None) -> MemoryCyclesResult:
    """Run fixed k on the engine, cut cycles, compare with the theory (paper and length-aware),
    the simulator (geometric and real lengths) and the engine's bytes. ``requested``: the
    number of requests asked for (``request_counts`` warns when the workload is smaller)."""
    run = engine.run(workload, FixedK(N, int(k)), termination=termination, max_tokens=max_tokens)
    outs = np.array([max(1, int(r["output_len"])) for r in run.requests], float)
    inps = np.array([r["input_len"] for r in run.requests], float)
    p, mu_L, var_L = float(1.0 / outs.mean()), float(inps.mean()), float(inps.var())
    th = theory_memory(N, int(k), p, mu_L, var_L)
    cyc = cycles(run.log, N, warmup=warmup)
    val = validate(cyc, th)
    steady = not (cyc.attrs.get("warmup") or {}).get("at_limit")
    la = length_aware(N, int(k), inps, outs, cis(cyc), seed, steady) if with_lengths else None

    sim = make_sim(timing, seed)
    geo_run = sim.run(geometric_workload(inps, p, mc_requests, seed), FixedK(N, int(k)))
    real_run = sim.run(lengths_workload(run), FixedK(N, int(k)))
    sim_geo = _summ(cycles(geo_run.log, N, warmup=warmup))
    sim_real_cyc = cycles(real_run.log, N, warmup=warmup)
    sim_real = _summ(sim_real_cyc)
    eng_tok = _summ(cyc)
    eng_bytes, note = None, None
    kvb = np.asarray(run.log["kv_bytes"], float)
    if (run.meta or {}).get("engine") == "sim":
        note = "the engine is the simulator: its bytes would be KV tokens x bytes per token, not a measurement"
    elif kv_bytes_per_token and np.isfinite(kvb).all() and kvb.size:
        cyc_b = cycles(run.log, N, warmup=warmup, column="kv_bytes")
        cyc_b[["X0", "Xmax", "supY"]] /= float(kv_bytes_per_token)
        eng_bytes = _summ(cyc_b)
    else:
        note = "no KV bytes recorded by the engine"
    thr = {"theory": theory_curve([int(k)], N, p, timing, mu_L)[0],
           "sim, geometric lengths": throughput_of(geo_run)["requests_per_s"],
           "sim, real lengths": throughput_of(real_run)["requests_per_s"],
           "engine, KV tokens": throughput_of(run)["requests_per_s"]}
    vs_sim = {key: err_pct(eng_tok[key], sim_real[key]) for key in ("X0", "Xmax", "supY")}
    return MemoryCyclesResult(
        theory=th, validation=val, sim_geometric=sim_geo, sim_real=sim_real, engine_tokens=eng_tok,
        engine_bytes=eng_bytes, errors_vs_sim_pct=vs_sim, length_aware=la, engine_bytes_note=note,
        requests=verdicts.request_counts(requested, len(workload), getattr(workload, "meta", None)),
        k_choice=k_choice, run=run, cycles=cyc, sim_cycles=sim_real_cyc,
        audit=formula_audit(th, sim_geo, val["measured"]),
        attribution=gap_attribution(th, sim_geo, sim_real, eng_tok, eng_bytes, thr))
