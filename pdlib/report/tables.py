"""Tables and short Markdown summaries shown in the notebooks (DataFrames / strings). They read
results as written to ``{dataset}_results.json``: an experiment's ``to_json()`` dict, or the
experiment result itself (converted here); no engine access."""
from __future__ import annotations

import pandas as pd

from pdlib import verdicts
from pdlib.report import ksearch, style
from pdlib.report.results import clean
from pdlib.report.style import interval as _ci
from pdlib.report.style import num as _f


def _json(exp) -> dict:
    """The JSON section of a result (a dict read from a results file is taken as it is)."""
    return exp if isinstance(exp, dict) else clean(exp)


def cell_header(cell, workload=None) -> str:
    """The cell in one line; with the loaded ``workload``, requests *requested vs used* and a
    warning (with its reason) when the dataset gave fewer than asked."""
    d = cell.describe()
    req = f"requests {d['num_requests']}"
    warn = ""
    if workload is not None:
        rc = verdicts.request_counts(d["num_requests"], len(workload), getattr(workload, "meta", None))
        req = f"requests used {rc['used']} of {rc['requested'] if rc['requested'] is not None else 'all'} requested"
        if rc["warning"]:
            warn = f"  \n⚠ **{rc['warning']}**"
    return (f"**dataset** `{d['dataset']}` · **model** `{d['model']}` ({d.get('weights')} weights, {d.get('dtype')}) · "
            f"**engine** `{d['engine']}` · {req} · seed {d['seed']}  \n"
            f"data: `{d['data_dir']}`" + warn)


def requests_md(exp) -> str:
    """Requested vs used requests of an experiment result (its ``requests`` entry)."""
    rc = _json(exp).get("requests") or {}
    if not rc:
        return ""
    s = f"Requests: {rc.get('used')} used of {rc.get('requested') if rc.get('requested') is not None else 'all'} requested."
    return s + (f" ⚠ **{rc['warning']}**" if rc.get("warning") else "")


def validity_table(exp) -> pd.DataFrame:
    """The validity flags of a result (``validity``: the paper's formulas and the length-aware
    model): what each assumes, the input's value, the threshold and whether it holds."""
    v = _json(exp).get("validity") or {}
    rows = [{"formulas": "paper" if src == "paper" else "length-aware", "assumption": r["name"], "holds": r["holds"],
             "value": r["value"], "threshold": r["threshold"], "why": r["why"]}
            for src in ("paper", "length_aware") for r in (v.get(src) or [])]
    cols = ["formulas", "assumption", "holds", "value", "threshold", "why"]
    return style.describe(pd.DataFrame(rows, columns=cols).set_index(["formulas", "assumption"]), caption=(
        "Assumptions of the paper's formulas and of the length-aware model, the workload's value and the "
        "threshold. Look at: any 'no' in holds — that formula's prediction is not expected to match."))


def length_table(stats: dict) -> pd.DataFrame:
    rows = []
    for what in ("input", "output"):
        s = stats[what]
        rows.append({"lengths (tokens)": what, **{k: s.get(k) for k in ("count", "mean", "median", "p95", "max")}})
    df = pd.DataFrame(rows).set_index("lengths (tokens)").round(2)
    df.attrs["p"] = stats["p"]
    return style.describe(df, headers={"count": "requests (count)", **{c: f"{c} (tokens)" for c in
                                                                     ("mean", "median", "p95", "max")}},
                          caption=f"Prompt and output lengths (tokens); p = 1/mean output = {style.fmt(stats['p'])} "
                                  "per decode step. Look at: p95 and max against the mean — a long tail is where "
                                  "the paper's geometric output lengths fit worst.")


def timing_table(t: dict) -> pd.DataFrame:
    rows = [("alpha_p (prefill fixed cost)", t["alpha_p"] * 1e3, "ms"),
            ("beta_p (prefill per token)", t["beta_p"] * 1e6, "us/token"),
            ("R² prefill", t["r2_prefill"], ""),
            ("alpha_d (decode fixed cost)", t["alpha_d"] * 1e3, "ms"),
            ("beta_d (decode per request)", t["beta_d"] * 1e3, "ms/request"),
            ("R² decode", t["r2_decode"], ""),
            ("prefill samples", t["n_prefill"], "steps"), ("decode samples", t["n_decode"], "steps")]
    df = pd.DataFrame(rows, columns=["quantity", "value", "unit"]).set_index("quantity")
    return style.describe(df, caption="The two-term timing model fitted to the measured steps (least squares). "
                                      "Look at: R² near 1 for both phases; a low R² means the linear model "
                                      "(and so k*) rests on a poor fit.")


def context_effect_md(t: dict) -> str:
    c = t.get("decode_context_effect") or {}
    if "error" in c or not c:
        return f"Decode context-length effect: not measurable here ({c.get('error', 'no samples')})."
    return (f"**Decode cost vs context length.** R² of the 2-term model (batch only): {_f(c['r2_two_term'], '{:.4f}')}; "
            f"adding batch×context: {_f(c['r2_with_context'], '{:.4f}')} — the 2-term model misses "
            f"{_f(100 * c['variance_missed_by_two_term'], '{:.2f}')} % of the decode-time variance.")


def kstar_md(exp) -> str:
    exp = _json(exp)
    piv, pall, kr = exp.get("p_interval") or {}, exp.get("p_all_interval") or {}, exp.get("k_star_range") or {}
    lines = [(f"- offline p = **{_f(exp['p_offline'])}** (95 % CI {_ci([piv.get('p_lo'), piv.get('p_hi')])}) from "
              f"{exp['offline_sample_size']} sampled outputs (all requests: {_f(exp['p_all'])}, "
              f"CI {_ci([pall.get('p_lo'), pall.get('p_hi')])}); mean input μ_L = {_f(exp['mu_L'])} tokens; N = {exp['N']}"),
             (f"- **k\\* = {exp['k_star']}** (θ = {_f(exp['theta'], '{:.3f}')}; large-N θ\\* = "
              f"{_f(exp.get('theta_star_large_N'), '{:.3f}')})")
             + (" — **no k satisfied the condition: the authors' N//5 fallback was used**"
                if exp["fallback_used"] else "")
             + (f"; over the p interval k\\* ranges **{kr.get('k_star_min')}–{kr.get('k_star_max')}** "
                f"(k\\*(p_lo) = {kr.get('k_star_at_p_lo')}, k\\*(p_hi) = {kr.get('k_star_at_p_hi')})" if kr else ""),
             (f"- **k̂ = {exp['k_hat']}** (best fixed k measured); throughput at k\\* "
              f"{_f(exp['throughput_at_k_star'])} req/s, at k̂ {_f(exp['throughput_at_k_hat'])} req/s"),
             f"- **gap = {_f(exp['gap_pct'], '{:.2f}')} %**" + ksearch.gap_ci_md(exp)
             + (("" if kr["k_star_min"] <= exp["k_hat"] <= kr["k_star_max"] else " — **k̂ lies outside the k\\* range "
                 "that p's 95 % interval allows**") if kr.get("k_star_min") is not None else ""),
             (f"- online k\\* (EMA a = {exp['online']['ema_alpha']}, every {exp['online']['kstar_update_interval']} "
              f"completions): {_f(exp['online']['requests_per_s'])} req/s, final p = {_f(exp['online']['final_p'])}, "
              f"final k = {exp['online']['final_k']}"),
             f"- termination: `{exp['termination']}`"]
    if exp.get("k_search"):
        lines.append("- " + ksearch.k_search_md(exp))
    kl = exp.get("k_star_lengths")
    if kl:
        lines.append(f"- length-aware k\\* (paired lengths, any N·p) = **{kl['k']}** (model {_f(kl['throughput_rps'])} "
                     f"req/s; measured {_f(kl.get('measured_requests_per_s'))} req/s)")
    if exp.get("k_hat_sim") is not None:
        lines.append(f"- simulator's best k = {exp['k_hat_sim']}")
    bad = [r["name"] for r in ((exp.get("validity") or {}).get("paper") or []) if not r["holds"]]
    if exp.get("validity"):
        lines.append("- paper's assumptions " + (f"**violated: {', '.join(bad)}**" if bad else "all hold")
                     + " (validity table below)")
    if requests_md(exp):
        lines.append("- " + requests_md(exp))
    mb = exp.get("memory_bound")
    if mb:
        rng = mb.get("N_star_prop3_range")
        lines.append(f"- memory-constrained N\\*: {_f(mb['N_star_prop3'])} (Prop. 3"
                     + (f"; {_f(rng[0])}–{_f(rng[1])} over p's 95 % interval at the same θ" if rng else "")
                     + f"), {_f(mb['N_star_clt'])} (CLT) for "
                     f"{_f(mb['capacity_tokens'], '{:.0f}')} KV tokens at ε = {mb['oom_tolerance']}")
    return "\n".join(lines)


def sweep_table(exp) -> pd.DataFrame:
    exp = _json(exp)
    df = pd.DataFrame(exp["sweep"])[["k", "requests_per_s", "output_tokens_per_s", "total_time_s", "completed",
                                     "degenerate", "steps"]]
    if all("steady_requests_per_s" in r for r in exp["sweep"]):
        df["steady_requests_per_s"] = [r["steady_requests_per_s"] for r in exp["sweep"]]
        df["steady_ci_lo"] = [(r["steady_requests_per_s_ci"] or [None])[0] for r in exp["sweep"]]
        df["steady_ci_hi"] = [(r["steady_requests_per_s_ci"] or [None, None])[1] for r in exp["sweep"]]
    if exp.get("sim"):
        df["sim_requests_per_s"] = [r["requests_per_s"] for r in exp["sim"]]
        df["sim_error_pct"] = 100 * (df["sim_requests_per_s"] - df["requests_per_s"]) / df["requests_per_s"]
    th = dict(zip(exp["theory_curve"]["k"], exp["theory_curve"]["requests_per_s"]))
    df["theory_requests_per_s"] = [th.get(k) for k in df["k"]]
    df["mark"] = ["k* and k̂" if k == exp["k_star"] == exp["k_hat"] else "k*" if k == exp["k_star"]
                  else "k̂" if k == exp["k_hat"] else "" for k in df["k"]]
    ksr = exp.get("k_search") or {}
    if ksr.get("runs"):
        first = {r["k"]: r["reason"] for r in reversed(ksr["runs"]) if r["repeat"] == 0}
        reps = {r["k"]: r["repeats"] for r in ksr.get("per_k") or []}
        df["repeats"] = [reps.get(k) for k in df["k"]]
        df["run because"] = [first.get(k, "") for k in df["k"]]
        df["tied with k̂"] = ["yes" if k in (ksr.get("tied") or []) else "" for k in df["k"]]
    return style.describe(df.set_index("k").round(4), headers={**SWEEP_HEADERS, "repeats": "runs at k (repeats)"},
                          signed=["sim_error_pct"], caption=SWEEP_CAPTION)


def truncation_md(exp) -> str:
    exp = _json(exp)
    tr = exp["truncated"]
    s = f"{len(tr)} truncated request(s) (capped outputs bias p upward)."
    if exp["termination"] == "model":
        s += (f" {len(exp['degenerate_ids'])} repetition-loop output(s) flagged"
              + (" and excluded from throughput." if exp["exclude_degenerate"] else " (kept in throughput)."))
    else:
        s += " Repetition loops are not checked under `dataset` termination (lengths are the reference's)."
    return s


def memory_md(exp) -> str:
    exp = _json(exp)
    th = exp["theory"]
    v = exp.get("verdicts") or {}
    counts = {x: sum(1 for y in v.values() if y == x) for x in ("pass", "fail", "inconclusive")}
    s = (f"N = {th['N']}, k = {th['k']} (θ = {th['theta']:.3f}), p = {_f(th['p'])} (run's outputs), "
         f"μ_L = {_f(th['mu_L'])} tokens; {exp['cycles']} steady-state cycles. "
         f"Memory in KV tokens; **{'all thresholds met' if exp['all_pass'] else 'some thresholds not met'}**")
    if v:
        s += (f" (verdicts on the 95 % interval of the signed error: {counts['pass']} pass, {counts['fail']} fail, "
              f"{counts['inconclusive']} inconclusive).")
    kc = exp.get("k_choice")
    if kc and kc.get("rule") == "lengths":
        s += (f"  \nk = the length-aware k\\* ({kc['k_star']}, `theory.k_star_lengths` on the run's pairs); the paper's "
              f"k\\* would be {kc.get('paper_k_star')} from p = {_f(kc['p'])} (95 % CI "
              f"{_ci([kc.get('p_lo'), kc.get('p_hi')])}, range {kc.get('k_star_min')}–{kc.get('k_star_max')}).")
    elif kc:
        s += (f"  \nk = k\\* from p = {_f(kc['p'])} (95 % CI {_ci([kc.get('p_lo'), kc.get('p_hi')])}, "
              f"{kc.get('sample_size')} outputs): over that interval k\\* ranges {kc.get('k_star_min')}–"
              f"{kc.get('k_star_max')}.")
    w = exp.get("warmup") or {}
    if w:
        s += (f"  \nWarm-up: {w.get('dropped')} of {w.get('total_cycles')} cycles dropped — {w.get('reason')}"
              + (f"; {w['excluded_other']} more excluded ({w['excluded_other_reason']})" if w.get("excluded_other") else "")
              + ".")
    if exp.get("verdict_note"):
        s += f"  \n⚠ **{exp['verdict_note']}**."
    if exp.get("error_definition"):
        s += f"  \nSigned error = {exp['error_definition']}."
    if exp.get("engine_bytes_note"):
        s += f"  \nEngine bytes: {exp['engine_bytes_note']}."
    if requests_md(exp):
        s += "  \n" + requests_md(exp)
    return s


def _err_row(name, meas, meas_ci, pred, err, err_ci, thr, verdict, vs_sim=None):
    err_ci = err_ci or [None, None]
    return {"quantity": name, "measured (KV tokens)": meas, "measured 95% CI": _ci(meas_ci), "theory": pred,
            "signed error %": err, "error CI lo %": err_ci[0], "error CI hi %": err_ci[1], "threshold ±%": thr,
            "verdict": verdict, "pass": verdict == "pass", "error vs sim %": vs_sim}


def memory_errors_table(exp) -> pd.DataFrame:
    """Signed errors (prediction/measured - 1, %) of the paper's formulas and of the length-aware
    model against the engine's cycles, with 95 % intervals and verdicts (pass only when the whole
    interval is inside the threshold)."""
    exp = _json(exp)
    th, vs, thr = exp["theory"], exp["errors_vs_sim_pct"], exp["thresholds"]
    m, e = exp["measured"], exp["errors_pct"]
    mci, eci = exp.get("measured_ci") or {}, exp.get("errors_ci_pct") or {}
    ver = exp.get("verdicts") or {q: ("pass" if ok else "fail") for q, ok in exp["pass"].items()}
    rows = [_err_row("X0", m["X0"], mci.get("X0"), th["E_X0"], e["X0"], eci.get("X0"), thr["X0"], ver["X0"], vs["X0"]),
            _err_row("Xmax", m["Xmax"], mci.get("Xmax"), th["E_Xmax"], e["Xmax"], eci.get("Xmax"), thr["Xmax"],
                     ver["Xmax"], vs["Xmax"]),
            _err_row("sup Y vs κ", m["supY"], mci.get("supY"), th["kappa"], e["kappa"], eci.get("kappa"), thr["kappa"],
                     ver["kappa"], vs["supY"]),
            _err_row("OOM bound valid (% of x)", exp["bound_valid_pct"], exp.get("bound_valid_ci_pct"), None, None, None,
                     thr["bound_valid"], ver["bound_valid"])]
    la = exp.get("length_aware")
    if la:
        for q, pk, tk in (("X0", "E_X0", "X0"), ("Xmax", "E_Xmax", "Xmax"), ("supY", "E_supY", "kappa")):
            rows.append(_err_row(f"{q} (length-aware)", m[q], mci.get(q), la[pk], la["errors_pct"][q],
                                 la["errors_ci_pct"][q], thr[tk], la["verdicts"][q]))
    return style.describe(pd.DataFrame(rows).set_index("quantity").round(2), headers=_ERR_HEADERS,
                          signed=["signed error %", "error CI lo %", "error CI hi %", "error vs sim %"],
                          caption="Signed error of each prediction, 100·(prediction/measured − 1) %, with its 95 % "
                                  "interval; pass only when the whole interval lies within ± the threshold (the OOM "
                                  "row: % of x where the bound holds). Look at: the verdict column, then which side "
                                  "of zero the interval sits — the sign says whether the theory over- or "
                                  "under-predicts.")


_ERR_HEADERS = {"measured 95% CI": "measured 95 % CI (KV tokens)", "theory": "theory (KV tokens)",
                "signed error %": "signed error (%)", "error CI lo %": "error 95 % CI lo (%)",
                "error CI hi %": "error 95 % CI hi (%)", "threshold ±%": "threshold (± %)",
                "error vs sim %": "error vs simulator (%)"}


def memory_columns_table(exp) -> pd.DataFrame:
    """Mean X0 / Xmax / sup Y (KV tokens) side by side: the paper's formulas (κ for sup Y), the
    length-aware model (the run's paired lengths), the simulator with geometric and with the
    real lengths, the engine in tokens and in bytes / bytes-per-token (— when not measured)."""
    exp = _json(exp)
    th, la = exp["theory"], exp.get("length_aware") or {}
    src = {"paper formula": {"X0": th["E_X0"], "Xmax": th["E_Xmax"], "supY": th["kappa"]},
           "length-aware model": {"X0": la.get("E_X0"), "Xmax": la.get("E_Xmax"), "supY": la.get("E_supY")},
           "sim, geometric lengths": exp["sim_geometric"], "sim, real lengths": exp["sim_real"],
           "engine, KV tokens": exp["engine_tokens"], "engine, KV bytes / bytes per token": exp.get("engine_bytes") or {}}
    df = pd.DataFrame({name: {q: v.get(q) for q in ("X0", "Xmax", "supY")} for name, v in src.items()})
    df.index.name = "KV tokens (mean over cycles)"
    df = df.astype(float).round(2)
    df.attrs["engine_bytes_note"] = exp.get("engine_bytes_note")
    return style.describe(df, caption="Mean X0, Xmax and sup Y over the steady-state cycles, in KV tokens, from "
                                      "each source (— where not measured). Look at: where the values jump from "
                                      "left to right — that step is where the gap comes from (lengths, engine, "
                                      "bytes).")


def audit_table(exp) -> pd.DataFrame:
    """Notebook 03's formula audit of E[X0] (seed 000's printed form, the corrected one, Monte
    Carlo, the engine) with each one's signed gap to Monte Carlo."""
    df = pd.DataFrame(_json(exp)["formula_audit"]).set_index("source")
    return style.describe(df, headers={"E_X0_tokens": "E[X0] (KV tokens)", "vs_monte_carlo_pct": "vs Monte Carlo (%)"},
                          signed=["vs_monte_carlo_pct"], caption=(
                              "E[X0] by each route, in KV tokens. Look at: the corrected (1 − θ) form lying near "
                              "Monte Carlo while seed 000's printed (1 − θ)² form does not."))


def attribution_table(exp) -> pd.DataFrame:
    """Notebook 03's gap attribution: mean X0 / Xmax / sup Y per level and the signed step from
    the level above, labelled with the cause that step isolates (DESIGN "Reading the gaps")."""
    df = pd.DataFrame(_json(exp)["attribution"]).set_index("level")
    heads = {"gap_cause": "cause of the step", "requests_per_s": "throughput (requests/s)",
             **{q: f"{q} (KV tokens)" for q in ("X0", "Xmax", "supY")},
             **{f"{q}_step_pct": f"{q} step from above (%)" for q in ("X0", "Xmax", "supY")}}
    return style.describe(df, headers=heads, signed=[f"{q}_step_pct" for q in ("X0", "Xmax", "supY")], caption=(
        "From the theory down to the engine's bytes, one cause per step. Look at: the largest step — that "
        "cause (formula algebra, non-geometric lengths, engine policy, memory layout) explains most of the gap."))


SWEEP_HEADERS = {"k": "refill size k (requests)", "requests_per_s": "engine, end to end (requests/s)",
                 "output_tokens_per_s": "engine (output tokens/s)", "completed": "completed (requests)",
                 "degenerate": "repetition loops (requests)", "steps": "steps (count)",
                 "steady_requests_per_s": "engine, steady state (requests/s)",
                 "steady_ci_lo": "steady 95 % CI lo (requests/s)", "steady_ci_hi": "steady 95 % CI hi (requests/s)",
                 "sim_requests_per_s": "simulator (requests/s)", "sim_error_pct": "simulator vs engine (%)",
                 "theory_requests_per_s": "theory (requests/s)", "mark": "k* / k̂"}
SWEEP_CAPTION = ("One run per fixed k. Look at: the row marked k̂ (best measured) against the row marked k*, and "
                 "whether the steady-state 95 % intervals of neighbouring k overlap (then the ranking is not "
                 "resolved by this many requests).")


# --------------------------------------------------------------------------- GPU budget (notebook 04)
BUDGET_HEADERS = {"fits": "fits on the GPU", "M_max_GB": "M_max: GPU memory (GB)",
                  "M_model_GB": "M_model: weights + reserve (GB)", "kv_bytes_per_token": "KV cache per token (bytes)",
                  "eta": "η: KV capacity (tokens)", "L0": "L0 = 0.1·η (tokens)",
                  **{f"b_{b}{s}": f"b_{b}, {r} request (requests)" for b in ("mem", "SLA", "target")
                     for s, r in (("", "mean"), ("_p95", "p95"))}}


def budget_table(df: pd.DataFrame, dtype: str | None = None) -> pd.DataFrame:
    """Seed 004's budget rows (``pdlib.budget.seed_vs_corrected`` or ``all_pairs``) ready to show:
    a GPU x model pair that does not fit says why in ``fits`` ("does not fit: qwen2.5-7b-instruct
    in fp16 needs 16.30 GiB (weights + overhead) but rtx4080-laptop has 12 GiB"; the reason is
    ``pdlib.budget``'s own) instead of a row of NaN; ``fits`` comes first."""
    from pdlib import budget
    df = df.copy()
    if "fits" in df:
        labels = []
        for key, ok in df["fits"].items():
            if ok:
                labels.append("yes")
                continue
            gpu, model = key if isinstance(key, tuple) else (df.at[key, "gpu"], df.at[key, "model"])
            r = budget.budget_table([gpu], [model], dtype=dtype).iloc[0]
            labels.append("does not fit: " + str(r.get("reason") or "M_model exceeds M_max").split(": M_model")[0])
        df["fits"] = labels
        if dtype and "dtype" in df:
            df["dtype"] = df["dtype"].where(df["dtype"].notna(), dtype)
        df = df[["fits"] + [c for c in df.columns if c != "fits"]]
    return style.describe(df, headers=BUDGET_HEADERS, caption=(
        "Seed 004's budget chain: η = (M_max − M_model)/KV per token, L0 = 0.1·η, b_mem = ⌊(η − L0)/μ⌋ for the "
        "mean and the p95 request size μ, b_target = min(b_mem, b_SLA, B_MAX). GB = 1e9 bytes. Look at: b_target "
        "— the batch the memory and the latency SLA allow — and pairs that do not fit at all."))

