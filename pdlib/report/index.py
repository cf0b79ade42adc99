"""``outputs/index.html``: the findings first (``pdlib.report.findings``: the answer per dataset
and engine), then every grid cell with links to its reports and its headline numbers (k*, k_hat,
gap %, memory errors); failed notebooks shown with their error."""
from __future__ import annotations

import html
from pathlib import Path

from pdlib.records import atomic_write_text
from pdlib.report.results import headline, read_json, results_path

HEAD_COLS = [("requests", "requests used / asked", "{}"), ("p", "p (1/tokens, all requests)", "{:.3g}"),
             ("p_kstar", "p for k* (1/tokens, sample)", "{:.3g}"), ("p_ci", "its 95 % CI (1/tokens)", "{}"),
             ("k_star", "k* (requests)", "{}"), ("k_star_range", "k* over p's CI", "{}"),
             ("k_star_lengths", "k* length-aware", "{}"), ("k_hat", "k̂ (requests)", "{}"), ("gap_pct", "gap (%)", "{:.3g}"),
             ("X0_err_pct", "X0 err (%)", "{:+.3g}"), ("X0_err_ci", "X0 err CI (%)", "{}"), ("X0_verdict", "X0", "{}"),
             ("Xmax_err_pct", "Xmax err (%)", "{:+.3g}"), ("Xmax_err_ci", "Xmax err CI (%)", "{}"),
             ("Xmax_verdict", "Xmax", "{}"),
             ("kappa_err_pct", "κ err (%)", "{:+.3g}"), ("kappa_err_ci", "κ err CI (%)", "{}"), ("kappa_verdict", "κ", "{}"),
             ("bound_valid_pct", "bound valid (% of x)", "{:.3g}"), ("bound_valid_verdict", "bound", "{}")]
VERDICT_CLASS = {"pass": "ok", "fail": "bad", "inconclusive": "inc"}


def _iv(iv, fmt="{:+.1f}"):
    if not iv or iv[0] is None or iv[1] is None:
        return None
    return f"[{fmt.format(iv[0])}, {fmt.format(iv[1])}]"


def headline_ci(res: dict) -> dict:
    """``results.headline`` plus the issue-14 honesty fields: requests used/asked and their
    warnings, p's 95 % interval, the k* range it implies, the length-aware k*, the signed
    memory errors' 95 % intervals and their verdicts."""
    h = dict(headline(res))
    k, m = res.get("kstar") or {}, res.get("memory") or {}
    if h.get("p") is None:      # notebook 01 did not run: p = 1/mean(output) over all requests from 02 or 03
        h["p"] = k.get("p_all") or (m.get("theory") or {}).get("p") or (m.get("k_choice") or {}).get("p")
    piv, kr = k.get("p_interval") or {}, k.get("k_star_range") or {}
    if piv:
        h["p_kstar"] = piv.get("p")
        h["p_ci"] = _iv([piv.get("p_lo"), piv.get("p_hi")], "{:.3g}")
    if kr.get("k_star_min") is not None:
        h["k_star_range"] = f"{kr['k_star_min']}–{kr['k_star_max']}"
    if k.get("k_star_lengths"):
        h["k_star_lengths"] = k["k_star_lengths"].get("k")
    eci, ver = m.get("errors_ci_pct") or {}, m.get("verdicts") or {}
    for q in ("X0", "Xmax", "kappa"):
        h[f"{q}_err_ci"] = _iv(eci.get(q))
        h[f"{q}_err_lo"], h[f"{q}_err_hi"] = (eci.get(q) or [None, None])[:2]
        h[f"{q}_verdict"] = ver.get(q)
    h["bound_valid_verdict"] = ver.get("bound_valid")
    warns, counts = [], None
    for sec in ("kstar", "memory"):
        rc = (res.get(sec) or {}).get("requests") or {}
        if rc:
            counts = counts or rc
            if rc.get("warning") and rc["warning"] not in warns:
                warns.append(rc["warning"])
    if counts:
        h["requests"] = f"{counts.get('used')}/{counts.get('requested') if counts.get('requested') is not None else 'all'}"
    if m.get("verdict_note"):
        warns.append(f"memory: {m['verdict_note']}")
    elif (m.get("warmup") or {}).get("at_limit"):
        warns.append(f"memory: {m['warmup'].get('reason')}")
    h["warnings"] = warns
    return h


def collect(outputs) -> list[dict]:
    """One row per cell folder (``cell.json``) under ``outputs``: grid, cell, notebooks' status,
    headline numbers."""
    outputs = Path(outputs)
    rows = []
    for cj in sorted(outputs.glob("*/**/cell.json")):
        rec = read_json(cj, {}) or {}
        d = cj.parent
        params = rec.get("params", {})
        dataset = params.get("dataset")
        res = read_json(results_path(d, dataset), {}) if dataset else {}
        rows.append({"grid": rec.get("grid", cj.relative_to(outputs).parts[0]), "cell": rec.get("cell", str(d)),
                     "dir": d.relative_to(outputs).as_posix(), "notebooks": rec.get("notebooks", {}), "params": params,
                     "headline": headline_ci(res or {}) if dataset else {}, "results": res or {}})
    return rows


def _fmt(v, f):
    if v is None:
        return "—"
    try:
        return f.format(v)
    except (ValueError, TypeError):
        return html.escape(str(v))


def render(rows: list[dict], outputs=None) -> str:
    """The page: findings (``findings.render_html``), then per grid the table of every cell; the
    link to a grid's summary notebook only when ``outputs/<grid>/00_index.html`` exists."""
    from pdlib.report.findings import collect_findings, render_html
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>pdlib reports</title><style>",
           ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td.l,th.l{text-align:left}"
            ".failed{background:#fdd}.ok{color:#060}.bad{color:#900;font-weight:bold}.inc{color:#a60}"
            ".warn{background:#ffe;text-align:left}.err{font-family:monospace;font-size:85%;color:#900;text-align:left}"
            "caption{caption-side:top;text-align:left;color:#333;max-width:70em;padding:0.3em 0}"
            ".box{overflow-x:auto;max-width:100%;margin-bottom:1em}th{white-space:normal;max-width:11em}"),
           "</style></head><body>",
           render_html(collect_findings(rows)),
           "<h1>pdlib reports</h1>",
           ("<p>Generated by <code>pdlib run</code>. k* = theory's refill size (its range over the 95 % interval "
            "of p), k̂ = best fixed k measured, gap % = 100·(thr(k̂) − thr(k*))/thr(k̂); memory errors of the "
            "theory in KV tokens are <b>signed</b>, 100·(prediction/measured − 1), with 95 % batch-means intervals "
            "over steady-state cycles (MSER-5 warm-up). Verdict: <b>pass</b> only when the whole interval lies "
            "inside the seed's threshold (X0 ±10 %, Xmax ±15 %, κ ±20 %, bound valid ≥ 90 %), <b>fail</b> when "
            "wholly outside, <b>inconclusive</b> when it straddles.</p>")]
    for grid in sorted({r["grid"] for r in rows}):
        out.append(f"<h2>grid {html.escape(grid)}: every cell</h2><div class='box'><table><tr><th class='l'>cell</th>"
                   "<th class='l'>reports</th>")
        out += [f"<th>{h}</th>" for _, h, _ in HEAD_COLS]
        out.append("</tr>")
        for r in (x for x in rows if x["grid"] == grid):
            links, errors = [], []
            for nb, st in sorted(r["notebooks"].items()):
                cls = "ok" if st.get("status") == "ok" else "failed"
                target = st.get("html") or st.get("ipynb")
                label = html.escape(nb) + ("" if cls == "ok" else " (failed)")
                links.append(f"<a class='{cls}' href='{html.escape(r['dir'])}/{html.escape(target)}'>{label}</a>"
                             if target else f"<span class='{cls}'>{label}</span>")
                if st.get("error"):
                    errors.append(f"{nb}: {st['error']}")
            failed = bool(errors)
            out.append(f"<tr class='{'failed' if failed else ''}'><td class='l'>{html.escape(r['cell'])}</td>"
                       f"<td class='l'>{' · '.join(links)}</td>")
            out += [f"<td class='{VERDICT_CLASS.get(r['headline'].get(k), '')}'>{_fmt(r['headline'].get(k), f)}</td>"
                    for k, _, f in HEAD_COLS]
            out.append("</tr>")
            for w in r["headline"].get("warnings") or []:
                out.append(f"<tr><td></td><td class='warn' colspan='{len(HEAD_COLS) + 1}'>⚠ {html.escape(w)}</td></tr>")
            for e in errors:
                out.append(f"<tr class='failed'><td></td><td class='err' colspan='{len(HEAD_COLS) + 1}'>"
                           f"{html.escape(e[:2000])}</td></tr>")
        out.append("</table></div>")
        idx = Path(grid) / "00_index.html"
        if outputs is not None and (Path(outputs) / idx).is_file():
            out.append(f"<p><a href='{html.escape(idx.as_posix())}'>summary notebook of grid {html.escape(grid)}</a></p>")
        else:
            out.append(f"<p>No summary notebook for grid {html.escape(grid)} (its index notebook has not run).</p>")
    if not rows:
        out.append("<p>No reports yet: run <code>pdlib run</code>.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def findings(outputs, grid: str | None = None) -> list[dict]:
    """The findings of every cell under ``outputs`` (``pdlib.report.findings.cell_findings``)."""
    from pdlib.report.findings import collect_findings
    return collect_findings(collect(outputs), grid)


def write_index(outputs="outputs") -> Path:
    outputs = Path(outputs)
    path = outputs / "index.html"
    atomic_write_text(path, render(collect(outputs), outputs))
    return path


def summary_frame(grid_dir):
    """A DataFrame of every cell of one grid's folder (for the 00_index notebook)."""
    import pandas as pd
    grid_dir = Path(grid_dir)
    rows = collect(grid_dir.parent)
    rows = [r for r in rows if r["grid"] == grid_dir.name]
    recs = []
    for r in rows:
        st = r["notebooks"]
        hl = dict(r["headline"])
        hl["warnings"] = "; ".join(hl.get("warnings") or [])
        recs.append({"cell": r["cell"], **hl,
                     "notebooks_ok": sum(s.get("status") == "ok" for s in st.values()),
                     "notebooks_failed": sum(s.get("status") != "ok" for s in st.values()),
                     "errors": "; ".join(f"{k}: {v['error']}" for k, v in st.items() if v.get("error"))})
    return pd.DataFrame(recs)
