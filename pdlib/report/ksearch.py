"""Notebook 02's k search and gap tables (issue 15 item 3, issue 14 item 5): which k were run and
why, and the throughput at k* and k̂ over repeats with the gap's 95 % interval and verdict. They
read ``kstar`` results (``SweepResult.to_json()`` or the dict read back); ``tables.kstar_md`` and
``tables.sweep_table`` use them."""
from __future__ import annotations

import pandas as pd

from pdlib.report import style
from pdlib.report.results import clean
from pdlib.report.style import interval as _ci
from pdlib.report.style import num as _f


def _json(exp) -> dict:
    return exp if isinstance(exp, dict) else clean(exp)


def gap_ci_md(exp) -> str:
    """`` (over n repeats: g % [lo, hi], verdict v against t %)`` from ``throughput_ci``; "" without it."""
    g = _json(exp).get("throughput_ci") or {}
    if not g:
        return ""
    return (f" (over {g['repeats']} repeat(s): **{_f(g['gap_pct'], '{:+.3g}')} %**, 95 % CI "
            f"{_ci(g['gap_ci'], '{:+.3g}')} — **{g['gap_verdict']}** against {_f(g['gap_threshold_pct'])} %, "
            f"{g['gap_threshold_note']})")


def k_search_md(exp) -> str:
    """One paragraph: how the k were chosen, how many runs against a full sweep, k̂ and its tied set."""
    k = _json(exp).get("k_search") or {}
    if not k:
        return ""
    nz = k.get("noise") or {}
    s = (f"k search `{k['mode']}`: {k['search_runs']} run(s) to find k̂ ({_f(100 * k['share_of_full_sweep'], '{:.3g}')} % "
         f"of the {k['full_sweep_runs']} of a full sweep over k = 1..N−1; budget {k['budget']}), "
         f"{k['total_runs']} in all with the throughput repeats (order of repeats: `{k['repeat_order']}`); "
         f"k̂ = **{k['k_hat']}**, ")
    s += ("identified (no other k run is tied with it within noise)" if k["identified"]
          else f"**not identified**: {k['note']}")
    if nz.get("sigma_e") is not None:
        s += f"; run-to-run noise σ = {_f(nz['sigma_e'], '{:.3g}')} requests/s ({nz['df']} df)"
    return s + "."


K_SEARCH_HEADERS = {"order": "run #", "k": "refill size k (requests)", "repeat": "repeat (workload order)",
                    "reason": "why this run", "phase": "phase", "requests_per_s": "engine, end to end (requests/s)",
                    "se": "its standard error (requests/s)"}


def k_search_table(exp) -> pd.DataFrame:
    """Every fixed-k run in the order it was made, with why (seed k*, bracket, golden, repeat ...)."""
    k = _json(exp).get("k_search") or {}
    cols = ["order", "k", "repeat", "reason", "phase", "requests_per_s", "se"]
    df = pd.DataFrame(k.get("runs") or [], columns=cols).set_index("order")
    return style.describe(df, headers=K_SEARCH_HEADERS, caption=(
        "Runs in order. Look at: how few k were run against a full sweep over 1..N−1, and the repeats — made "
        "where two k differed by less than the noise."))


GAP_HEADERS = {"which": "refill size", "k": "k (requests)", "requests_per_s": "mean over repeats (requests/s)",
               "ci_lo": "95 % CI low (requests/s)", "ci_hi": "95 % CI high (requests/s)", "repeats": "repeats"}


def gap_table(exp) -> pd.DataFrame:
    """Throughput at k* and k̂ over the repeats with 95 % intervals (``throughput_ci``)."""
    g = _json(exp).get("throughput_ci") or {}
    rows = [{"which": w, "k": g[key]["k"], "requests_per_s": g[key]["requests_per_s"], "ci_lo": g[key]["ci"][0],
             "ci_hi": g[key]["ci"][1], "repeats": g["repeats"]} for w, key in (("k*", "k_star"), ("k̂", "k_hat"))
            if key in g]
    df = pd.DataFrame(rows, columns=list(GAP_HEADERS)).set_index("which")
    return style.describe(df, headers=GAP_HEADERS, caption=(
        f"Gap {_f(g.get('gap_pct'), '{:+.3g}')} %, 95 % CI {_ci(g.get('gap_ci'), '{:+.3g}')} ({g.get('gap_source')}): "
        f"{g.get('gap_verdict')} against {_f(g.get('gap_threshold_pct'))} % ({g.get('gap_threshold_note')})."
        if g else "No repeats were run."))
