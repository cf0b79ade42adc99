"""Tables and short Markdown summaries shown in the notebooks (DataFrames / strings). They read
results as written to ``{dataset}_results.json``: an experiment's ``to_json()`` dict, or the
experiment result itself (converted here); no engine access."""
from __future__ import annotations

import pandas as pd

from pdlib.report.results import clean


def _json(exp) -> dict:
    """The JSON section of a result (a dict read from a results file is taken as it is)."""
    return exp if isinstance(exp, dict) else clean(exp)


def _f(v, fmt="{:.4g}"):
    if v is None:
        return "—"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def cell_header(cell) -> str:
    d = cell.describe()
    return (f"**dataset** `{d['dataset']}` · **model** `{d['model']}` ({d.get('weights')} weights, {d.get('dtype')}) · "
            f"**engine** `{d['engine']}` · requests {d['num_requests']} · seed {d['seed']}  \n"
            f"data: `{d['data_dir']}`")


def length_table(stats: dict) -> pd.DataFrame:
    rows = []
    for what in ("input", "output"):
        s = stats[what]
        rows.append({"lengths (tokens)": what, **{k: s.get(k) for k in ("count", "mean", "median", "p95", "max")}})
    df = pd.DataFrame(rows).set_index("lengths (tokens)")
    df.attrs["p"] = stats["p"]
    return df.round(2)


def timing_table(t: dict) -> pd.DataFrame:
    rows = [("alpha_p (prefill fixed cost)", t["alpha_p"] * 1e3, "ms"),
            ("beta_p (prefill per token)", t["beta_p"] * 1e6, "us/token"),
            ("R² prefill", t["r2_prefill"], ""),
            ("alpha_d (decode fixed cost)", t["alpha_d"] * 1e3, "ms"),
            ("beta_d (decode per request)", t["beta_d"] * 1e3, "ms/request"),
            ("R² decode", t["r2_decode"], ""),
            ("prefill samples", t["n_prefill"], ""), ("decode samples", t["n_decode"], "")]
    return pd.DataFrame(rows, columns=["quantity", "value", "unit"]).set_index("quantity")


def context_effect_md(t: dict) -> str:
    c = t.get("decode_context_effect") or {}
    if "error" in c or not c:
        return f"Decode context-length effect: not measurable here ({c.get('error', 'no samples')})."
    return (f"**Decode cost vs context length.** R² of the 2-term model (batch only): {_f(c['r2_two_term'], '{:.4f}')}; "
            f"adding batch×context: {_f(c['r2_with_context'], '{:.4f}')} — the 2-term model misses "
            f"{_f(100 * c['variance_missed_by_two_term'], '{:.2f}')} % of the decode-time variance.")


def kstar_md(exp) -> str:
    exp = _json(exp)
    lines = [(f"- offline p = **{_f(exp['p_offline'])}** from {exp['offline_sample_size']} sampled outputs "
              f"(all requests: {_f(exp['p_all'])}); mean input μ_L = {_f(exp['mu_L'])} tokens; N = {exp['N']}"),
             (f"- **k\\* = {exp['k_star']}** (θ = {_f(exp['theta'], '{:.3f}')}; large-N θ\\* = "
              f"{_f(exp.get('theta_star_large_N'), '{:.3f}')})")
             + (" — **no k satisfied the condition: the authors' N//5 fallback was used**"
                if exp["fallback_used"] else ""),
             (f"- **k̂ = {exp['k_hat']}** (best fixed k measured); throughput at k\\* "
              f"{_f(exp['throughput_at_k_star'])} req/s, at k̂ {_f(exp['throughput_at_k_hat'])} req/s"),
             f"- **gap = {_f(exp['gap_pct'], '{:.2f}')} %**",
             (f"- online k\\* (EMA a = {exp['online']['ema_alpha']}, every {exp['online']['kstar_update_interval']} "
              f"completions): {_f(exp['online']['requests_per_s'])} req/s, final p = {_f(exp['online']['final_p'])}, "
              f"final k = {exp['online']['final_k']}"),
             f"- termination: `{exp['termination']}`"]
    if exp.get("k_hat_sim") is not None:
        lines.append(f"- simulator's best k = {exp['k_hat_sim']}")
    mb = exp.get("memory_bound")
    if mb:
        lines.append(f"- memory-constrained N\\*: {mb['N_star_prop3']} (Prop. 3), {mb['N_star_clt']} (CLT) for "
                     f"{_f(mb['capacity_tokens'], '{:.0f}')} KV tokens at ε = {mb['oom_tolerance']}")
    return "\n".join(lines)


def sweep_table(exp) -> pd.DataFrame:
    exp = _json(exp)
    df = pd.DataFrame(exp["sweep"])[["k", "requests_per_s", "output_tokens_per_s", "total_time_s", "completed",
                                     "degenerate", "steps"]]
    if exp.get("sim"):
        df["sim_requests_per_s"] = [r["requests_per_s"] for r in exp["sim"]]
        df["sim_error_pct"] = 100 * (df["sim_requests_per_s"] - df["requests_per_s"]) / df["requests_per_s"]
    th = dict(zip(exp["theory_curve"]["k"], exp["theory_curve"]["requests_per_s"]))
    df["theory_requests_per_s"] = [th.get(k) for k in df["k"]]
    df["mark"] = ["k* and k̂" if k == exp["k_star"] == exp["k_hat"] else "k*" if k == exp["k_star"]
                  else "k̂" if k == exp["k_hat"] else "" for k in df["k"]]
    return df.set_index("k").round(4)


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
    return (f"N = {th['N']}, k = {th['k']} (θ = {th['theta']:.3f}), p = {th['p']:.4g} (run's outputs), "
            f"μ_L = {th['mu_L']:.4g} tokens; {exp['cycles']} steady-state cycles. "
            f"Memory in KV tokens; **{'all thresholds met' if exp['all_pass'] else 'some thresholds missed'}**.")


def memory_errors_table(exp) -> pd.DataFrame:
    exp = _json(exp)
    th, vs, ok = exp["theory"], exp["errors_vs_sim_pct"], exp["pass"]
    m, e, thr = exp["measured"], exp["errors_pct"], exp["thresholds"]
    rows = [("X0", m["X0"], th["E_X0"], e["X0"], thr["X0"], ok["X0"], vs["X0"]),
            ("Xmax", m["Xmax"], th["E_Xmax"], e["Xmax"], thr["Xmax"], ok["Xmax"], vs["Xmax"]),
            ("sup Y vs κ", m["supY"], th["kappa"], e["kappa"], thr["kappa"], ok["kappa"], vs["supY"]),
            ("OOM bound valid (% of x)", exp["bound_valid_pct"], None, None, thr["bound_valid"],
             ok["bound_valid"], None)]
    return pd.DataFrame(rows, columns=["quantity", "measured (KV tokens)", "theory", "error %", "threshold %",
                                       "pass", "error vs sim %"]).set_index("quantity").round(2)
