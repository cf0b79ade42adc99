"""The findings: per dataset and engine (timing preset or real engine), does the theory's
answer hold? Read from the cells' ``{dataset}_results.json`` (sections ``kstar`` of notebook
02 and ``memory`` of notebook 03) and ``cell.json``; shown first on ``outputs/index.html`` and
written to ``docs/findings.md`` by ``pdlib findings``.

Per cell:
* **k\\* vs k̂** — gap % = ``100 * (1 - thr(k)/thr(k̂))``. For the paper's k*, notebook 02's gap
  over paired repeats with its 95 % interval and verdict (``throughput_ci``, owned by
  ``pdlib.experiments.search``). For the length-aware k* (``theory.k_star_lengths``), and for
  results without ``throughput_ci``, ``gap``: the steady-state requests/s of the two fixed-k runs
  (``sweep.steady_throughput``: ratio batch means over MSER-5 cycles), 95 % interval the
  rectangle of the two runs' intervals (``verdicts.error_interval`` of thr(k) against thr(k̂),
  negated); k = k̂ is the same run: gap 0 exactly. Verdict against ``GAP_THRESHOLD_PCT`` (5 %,
  pdlib's choice as in notebook 02: the paper sets no threshold on the gap).
* **memory** — the signed errors of E[X0], E[Xmax] and sup Y (the paper's κ, the length-aware
  E[sup Y]) with their 95 % intervals and verdicts, as notebook 03 computed them
  (``memory_cycles``: seed thresholds X0 ±10 %, Xmax ±15 %, κ ±20 %); the OOM bound's validity
  (% of the x grid where the bound holds, Wilson interval, verdict at >= 90 %).
* **verdict** of each model: "fail" when any of its checks fails, "pass" when all pass,
  else "inconclusive" (a check without an interval never passes).
* requests used vs requested with the loader's reason, N with the memory bound N* (Prop. 3; its range
  over p's 95 % interval), the steady-state cycles behind the memory intervals, and a reason wherever a
  value is missing."""
from __future__ import annotations

import html
import math
from pathlib import Path

from pdlib import verdicts
from pdlib.report import style

GAP_THRESHOLD_PCT = 5.0
MEMORY_PAPER, MEMORY_LENGTHS = ("X0", "Xmax", "kappa"), ("X0", "Xmax", "supY")   # E[X0], E[Xmax], sup Y
VERDICT_CLASS = {"pass": "ok", "fail": "bad", "inconclusive": "inc"}


def _num(x):
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _steady(row: dict) -> dict:
    ci = row.get("steady_requests_per_s_ci") or [None, None]
    return {"mean": _num(row.get("steady_requests_per_s")), "lo": _num(ci[0]), "hi": _num(ci[1])}


def gap(rows: list, k, k_best) -> dict:
    """Gap % of refill size ``k`` to the best fixed ``k_best`` with its 95 % interval and verdict
    (module docstring); a reason instead when a run is missing."""
    by_k = {int(r["k"]): r for r in rows or []}
    if k is None or k_best is None:
        return {"gap_pct": None, "lo": None, "hi": None, "verdict": "inconclusive", "reason": "no k to compare"}
    if int(k) not in by_k or int(k_best) not in by_k:
        return {"gap_pct": None, "lo": None, "hi": None, "verdict": "inconclusive",
                "reason": f"k={k} was not run in the sweep"}
    if int(k) == int(k_best):
        return {"gap_pct": 0.0, "lo": 0.0, "hi": 0.0, "verdict": "pass", "reason": None}
    a, b = _steady(by_k[int(k)]), _steady(by_k[int(k_best)])
    if a["mean"] is None or b["mean"] is None:
        run = by_k[int(k)].get("requests_per_s"), by_k[int(k_best)].get("requests_per_s")
        g = 100.0 * (1 - run[0] / run[1]) if _num(run[0]) is not None and _num(run[1]) else None
        return {"gap_pct": g, "lo": None, "hi": None, "verdict": "inconclusive",
                "reason": "no steady-state cycles in a fixed-k run (whole-run gap shown)"}
    e = verdicts.error_interval(a["mean"], b, a)
    g, lo, hi = -e["error_pct"], _num(-e["hi"]), _num(-e["lo"])
    out = {"gap_pct": g, "lo": lo, "hi": hi, "verdict": verdicts.verdict(lo, hi, GAP_THRESHOLD_PCT), "reason": None}
    if lo is None:
        out["reason"] = "a fixed-k run has too few steady-state cycles for an interval"
    return out


def _check(err: dict | None, ci, verdict) -> dict:
    ci = ci or [None, None]
    return {"err_pct": _num(err), "lo": _num(ci[0]), "hi": _num(ci[1]), "verdict": verdict or "inconclusive"}


def combine(vs) -> str:
    """"fail" if any check fails, "pass" if all pass, else "inconclusive"."""
    vs = list(vs)
    if any(v == "fail" for v in vs):
        return "fail"
    return "pass" if vs and all(v == "pass" for v in vs) else "inconclusive"


def _why_missing(nb_status: dict | None, nb: str) -> str:
    if not nb_status:
        return f"{nb} did not run in this grid"
    if nb_status.get("status") != "ok":
        return f"{nb} failed: {str(nb_status.get('error') or 'unknown error')[:300]}"
    return f"{nb} wrote no result section"


def cell_findings(row: dict) -> dict:
    """The findings of one cell (a row of ``pdlib.report.index.collect``)."""
    res, nbs = row.get("results") or {}, row.get("notebooks") or {}
    params = (row.get("params") or {})
    k, m = res.get("kstar") or {}, res.get("memory") or {}
    cell = res.get("cell") or {}
    impl = (k.get("engine_meta") or m.get("engine_meta") or {}).get("engine") or cell.get("engine")
    f = {"grid": row.get("grid"), "cell": row.get("cell"), "dir": row.get("dir"),
         "dataset": params.get("dataset") or cell.get("dataset"), "model": params.get("model") or cell.get("model"),
         "engine": params.get("engine") or cell.get("engine"),
         "kind": "digital twin" if impl == "sim" else ("real engine" if impl else None),
         "N": k.get("N") or (m.get("theory") or {}).get("N") or params.get("N"), "reasons": []}
    mb = k.get("memory_bound") or {}
    f["N_star"], f["N_star_range"] = mb.get("N_star_prop3"), mb.get("N_star_prop3_range")
    rc = k.get("requests") or m.get("requests") or {}
    f["requested"], f["used"] = rc.get("requested"), rc.get("used")
    if rc.get("warning"):
        f["reasons"].append(f"requests: {rc.get('reason') or rc['warning']}")
    if f["N"] and f["used"] and f["N"] == max(1, int(f["used"]) // 8) and (f["N_star"] is None or f["N"] < f["N_star"]):
        f["reasons"].append(f"N = {f['N']} = requests/8, below the memory bound: {f['used']} requests leave "
                            "refill cycles after the initial fill only for a small N")
    if k:
        f["k_star"], f["k_hat"] = k.get("k_star"), k.get("k_hat")
        r = k.get("k_star_range") or {}
        f["k_star_range"] = (r.get("k_star_min"), r.get("k_star_max")) if r.get("k_star_min") is not None else None
        f["gap_run_pct"] = _num(k.get("gap_pct"))
        tc = k.get("throughput_ci") or {}
        if tc.get("gap_ci"):             # notebook 02's gap over paired repeats (pdlib.experiments.search)
            lo, hi = tc["gap_ci"][:2]
            f["gap"] = {"gap_pct": _num(tc.get("gap_pct")), "lo": _num(lo), "hi": _num(hi), "source": tc.get("gap_source"),
                        "verdict": tc.get("gap_verdict") or "inconclusive",
                        "reason": None if _num(lo) is not None else f"no interval ({tc.get('gap_source')})"}
        else:
            f["gap"] = gap(k.get("sweep"), k.get("k_star"), k.get("k_hat"))
        t, ts = k.get("timing") or {}, tc.get("k_star") or {}
        f["fidelity"] = {"r2_prefill": _num(t.get("r2_prefill")), "r2_decode": _num(t.get("r2_decode")),
                         "thr_k_star": _num(ts.get("requests_per_s")), "thr_ci": ts.get("ci") or [None, None],
                         "repeats": tc.get("repeats"),
                         "sim_err_pct": _num((k.get("sim_error_pct") or {}).get(str(k.get("k_star")),
                                             (k.get("sim_error_pct") or {}).get(k.get("k_star"))))}
        ksr = k.get("k_search") or {}
        f["k_runs"], f["k_search"] = ksr.get("total_runs"), ksr.get("mode")
        kl = k.get("k_star_lengths") or {}
        f["k_star_lengths"] = kl.get("k")
        f["gap_lengths"] = gap(k.get("sweep"), kl.get("k"), k.get("k_hat")) if kl else None
        f["ks_run"] = len(k.get("ks") or [])
        for g, who in ((f["gap"], "paper k*"), (f["gap_lengths"], "length-aware k*")):
            if g and g.get("reason"):
                f["reasons"].append(f"{who}: {g['reason']}")
    else:
        f["reasons"].append(_why_missing(nbs.get("02_kstar_vs_khat"), "02_kstar_vs_khat"))
    if m:
        eci, ver, err = m.get("errors_ci_pct") or {}, m.get("verdicts") or {}, m.get("errors_pct") or {}
        f["paper"] = {q: _check(err.get(q), eci.get(q), ver.get(q)) for q in MEMORY_PAPER}
        la = m.get("length_aware") or {}
        f["lengths"] = ({q: _check((la.get("errors_pct") or {}).get(q), (la.get("errors_ci_pct") or {}).get(q),
                                   (la.get("verdicts") or {}).get(q)) for q in MEMORY_LENGTHS} if la else None)
        bci = m.get("bound_valid_ci_pct") or [None, None]
        f["bound"] = {"valid_pct": _num(m.get("bound_valid_pct")), "lo": _num(bci[0]), "hi": _num(bci[1]),
                      "verdict": ver.get("bound_valid") or "inconclusive"}
        w = m.get("warmup") or {}
        f["cycles"] = w.get("kept_cycles", m.get("cycles"))
        f["k_memory"] = (m.get("theory") or {}).get("k")
        f["kv_vs_sim"] = {q: _num(v) for q, v in (m.get("errors_vs_sim_pct") or {}).items()}
        if m.get("verdict_note"):
            f["reasons"].append(f"memory: {m['verdict_note']}")
        elif any(c["lo"] is None for c in f["paper"].values()):
            f["reasons"].append(f"memory: no interval — {w.get('reason') or 'too few cycles'}")
    else:
        f["reasons"].append(_why_missing(nbs.get("03_memory_validation"), "03_memory_validation"))
    paper = [f["gap"]["verdict"]] if k else []
    paper += [c["verdict"] for c in (f.get("paper") or {}).values()]
    paper += [f["bound"]["verdict"]] if m else []
    lengths = [f["gap_lengths"]["verdict"]] if f.get("gap_lengths") else []
    lengths += [c["verdict"] for c in (f.get("lengths") or {}).values()]
    f["verdict_paper"] = combine(paper) if (k and m) else "inconclusive"
    f["verdict_lengths"] = combine(lengths) if (f.get("gap_lengths") and f.get("lengths")) else "inconclusive"
    f["links"] = [(nb, st.get("html") or st.get("ipynb"), st.get("status") == "ok") for nb, st in sorted(nbs.items())]
    return f


def collect_findings(rows: list[dict], grid: str | None = None) -> list[dict]:
    """``cell_findings`` of every row of ``pdlib.report.index.collect`` (only ``grid`` when given),
    sorted by grid, dataset, kind, engine (``pdlib.report.index.findings`` reads them from a folder)."""
    out = [cell_findings(r) for r in rows if grid is None or r["grid"] == grid]
    return sorted(out, key=lambda f: (str(f["grid"]), str(f["dataset"]), str(f["kind"]), str(f["engine"])))


# --------------------------------------------------------------------------- formatting

def _iv(lo, hi, signed=True) -> str:
    if lo is None or hi is None:
        return ""
    return f" [{style.fmt(lo, signed=signed)}, {style.fmt(hi, signed=signed)}]"


def _val(d: dict | None, key: str, reason: str = "—") -> str:
    """``value [lo, hi]`` of a check (signed, 3 significant digits) or the reason it is missing."""
    if not d or d.get(key) is None:
        return reason
    return style.fmt(d[key], signed=True) + _iv(d.get("lo"), d.get("hi"))


def _requests(f) -> str:
    if f.get("used") is None:
        return "—"
    asked = f.get("requested") if f.get("requested") is not None else "all"
    return f"{style.fmt(f['used'])} / {style.fmt(asked)}"


def _n(f) -> str:
    if f.get("N") is None:
        return "—"
    r, star = f.get("N_star_range"), f.get("N_star")
    rng = f", {style.fmt(r[0])}–{style.fmt(r[1])} over p's 95 % CI" if r and r[0] != r[1] else ""
    return style.fmt(f["N"]) + (f" (N* {style.fmt(star)}{rng})" if star is not None else "")


def _krange(f) -> str:
    if f.get("k_star") is None:
        return "—"
    r = f.get("k_star_range")
    return style.fmt(f["k_star"]) + (f" ({style.fmt(r[0])}–{style.fmt(r[1])})" if r else "")


KSTAR_HEAD = ("dataset", "engine", "N (memory bound N*)", "requests used / asked", "k* paper (p 95 % range)",
              "k̂ best fixed k (k runs)", "gap % paper k* [95 % CI]", "verdict", "k* length-aware", "gap % length-aware [95 % CI]",
              "verdict")
MEMORY_HEAD = ("dataset", "engine", "k run", "steady cycles", "paper E[X0] err % [CI]", "paper E[Xmax] err %",
               "paper sup Y (κ) err %", "length-aware E[X0] err %", "length-aware E[Xmax] err %",
               "length-aware E[sup Y] err %", "OOM bound valid % [CI]")
FIDELITY_HEAD = ("dataset", "engine", "KV tokens vs simulator: X0 / Xmax / sup Y err %", "timing fit R² prefill / decode",
                 "throughput at k* (requests/s) [95 % CI over repeats]", "simulator's throughput err % at k*")
VERDICT_HEAD = ("dataset", "engine", "paper model", "length-aware model", "why a value is missing or differs")


def rows_kstar(fs) -> list[tuple]:
    out = []
    for f in fs:
        g, gl = f.get("gap"), f.get("gap_lengths")
        if f.get("k_star") is None:
            why = next((r for r in f["reasons"] if r.startswith("02")), "no k* result")
            out.append((f["dataset"], f["engine"], _n(f), _requests(f), why, "", "", "", "", "", ""))
            continue
        runs = f" ({style.fmt(f['k_runs'])} {f.get('k_search') or ''})" if f.get("k_runs") else ""
        out.append((f["dataset"], f["engine"], _n(f), _requests(f), _krange(f), style.fmt(f.get("k_hat")) + runs,
                    _val(g, "gap_pct", g.get("reason") or "—"), ("verdict", g["verdict"]),
                    style.fmt(f.get("k_star_lengths")), _val(gl, "gap_pct", (gl or {}).get("reason") or "—"),
                    ("verdict", (gl or {}).get("verdict", "inconclusive"))))
    return out


def _mem(c: dict | None) -> tuple:
    if not c:
        return ("—",)
    return (("verdict", c["verdict"], _val(c, "err_pct", "no value (measured 0 or missing)")),)


def rows_memory(fs) -> list[tuple]:
    out = []
    for f in fs:
        if not f.get("paper"):
            why = next((r for r in f["reasons"] if r.startswith("03")), "no memory result")
            out.append((f["dataset"], f["engine"], why, "", "", "", "", "", "", "", ""))
            continue
        p, la, b = f["paper"], f.get("lengths") or {}, f["bound"]
        cells = [c for q in MEMORY_PAPER for c in _mem(p.get(q))]
        cells += [c for q in MEMORY_LENGTHS for c in _mem(la.get(q))]
        bound = ("verdict", b["verdict"], (style.fmt(b["valid_pct"]) + _iv(b["lo"], b["hi"], False))
                 if b["valid_pct"] is not None else "—")
        out.append((f["dataset"], f["engine"], style.fmt(f.get("k_memory")), style.fmt(f.get("cycles")), *cells, bound))
    return out


def rows_fidelity(fs) -> list[tuple]:
    """Real engines: per-step KV tokens against the simulator on the same workload (0 = token for
    token), the timing fit's R² (shown as measured, however poor), throughput over repeats."""
    out = []
    for f in fs:
        fi, kv = f.get("fidelity") or {}, f.get("kv_vs_sim") or {}
        kvs = " / ".join(style.fmt(kv.get(q), signed=True) for q in ("X0", "Xmax", "supY")) if kv else "no 03 result"
        r2 = (f"{style.fmt(fi.get('r2_prefill'))} / {style.fmt(fi.get('r2_decode'))}" if fi else "no 02 result")
        ci = fi.get("thr_ci") or [None, None]
        thr = (style.fmt(fi["thr_k_star"]) + _iv(_num(ci[0]), _num(ci[1]), False) +
               (f" ({fi['repeats']} repeats)" if fi.get("repeats") else "")) if fi.get("thr_k_star") else "—"
        out.append((f["dataset"], f["engine"], kvs, r2, thr, style.fmt(fi.get("sim_err_pct"), signed=True)))
    return out


def rows_verdict(fs) -> list[tuple]:
    return [(f["dataset"], f["engine"], ("verdict", f["verdict_paper"]), ("verdict", f["verdict_lengths"]),
             "; ".join(f["reasons"]) or "—") for f in fs]


def _cell_text(c) -> str:
    if isinstance(c, tuple):
        return f"{c[2]} {c[1]}" if len(c) > 2 else c[1]
    return str(c)


def markdown_table(head, rows) -> str:
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(_cell_text(c)) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_cell(c) -> str:
    if isinstance(c, tuple):
        cls = VERDICT_CLASS.get(c[1], "")
        text = f"{html.escape(c[2])} <b>{html.escape(c[1])}</b>" if len(c) > 2 else f"<b>{html.escape(c[1])}</b>"
        return f"<td class='{cls}'>{text}</td>"
    s = str(c)
    return f"<td class='{'l' if len(s) > 24 or not s[:1].isdigit() else ''}'>{html.escape(s)}</td>"


def html_table(head, rows, caption: str) -> str:
    out = [f"<div class='box'><table><caption>{html.escape(caption)}</caption><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr>")
    out += ["<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows]
    out.append("</table></div>")
    return "".join(out)


CAPTIONS = {
    "kstar": ("k* (the theory's refill size) against k̂ (the best fixed k measured on the engine; k runs: how many "
              "fixed-k runs found it). gap % = 100·(1 − thr(k)/thr(k̂)); paper k*: over notebook 02's paired "
              "repeats (delta-method 95 % interval), length-aware k*: the two runs' steady-state requests/s "
              f"(rectangle of their batch-means intervals); pass when the whole interval is below "
              f"{GAP_THRESHOLD_PCT:g} % (pdlib's choice)."),
    "memory": ("Signed errors 100·(prediction/measured − 1) in KV tokens with 95 % batch-means intervals over the "
               "steady-state cycles (MSER-5 warm-up); pass only when the whole interval is inside the seed's "
               "threshold (X0 ±10 %, Xmax ±15 %, κ/sup Y ±20 %, bound valid ≥ 90 %)."),
    "fidelity": ("Fidelity of the real engines: KV tokens per step against the simulator on the same requests "
                 "(signed error of X0 / Xmax / sup Y, 0 = token for token), R² of the two-term timing fit as measured "
                 "(a low R² means the linear model misses the engine's step times), throughput at k* over repeats."),
    "verdict": ("A model fails when any of its checks fails, passes when all pass, else inconclusive; the reasons "
                "say which values are missing and why, and where fewer requests were used than asked."),
}


KIND_LABEL = {"digital twin": "Digital twin (simulator with published GPU timing presets)",
              "real engine": "Real engines (fidelity on a tiny model, CPU)", None: "Cells without results"}


def sections(fs: list[dict]):
    """``(grid, kind label or None for a new grid, [(caption key, header, rows)])`` in page order."""
    for grid in sorted({str(f["grid"]) for f in fs}):
        yield grid, None, []
        for kind, label in KIND_LABEL.items():
            part = [f for f in fs if str(f["grid"]) == grid and f["kind"] == kind]
            if part:
                fid = [("fidelity", FIDELITY_HEAD, rows_fidelity(part))] if kind == "real engine" else []
                yield grid, label, [("kstar", KSTAR_HEAD, rows_kstar(part)), ("memory", MEMORY_HEAD, rows_memory(part)),
                                    *fid, ("verdict", VERDICT_HEAD, rows_verdict(part))]


def render_html(fs: list[dict]) -> str:
    """The findings section of ``outputs/index.html`` (one block per grid)."""
    out = ["<h1>Findings</h1>"] if fs else []
    for grid, label, tables in sections(fs):
        if label is None:
            out.append(f"<h2>grid {html.escape(grid)}: the answer per dataset and engine</h2>")
            continue
        out.append(f"<h3>{html.escape(label)}</h3>")
        out += [html_table(head, rows, CAPTIONS[key]) for key, head, rows in tables]
    return "\n".join(out)


def render_markdown(fs: list[dict], header: str = "") -> str:
    """``docs/findings.md``: ``header`` (date, hardware, command) then the same tables."""
    out = [header.rstrip(), ""] if header else []
    for grid, label, tables in sections(fs):
        out.append(f"## grid `{grid}`\n" if label is None else f"### {label}\n")
        for key, head, rows in tables:
            out += [CAPTIONS[key], "", markdown_table(head, rows), ""]
    if not fs:
        out.append("No results: run `pdlib run --grid params/grid-default.yaml` first.")
    return "\n".join(out) + "\n"


def run_info(outputs, grid: str | None = None) -> dict:
    """When the results were made (the done-markers: first start, last finish, wall span between
    them, which counts a run interrupted and resumed as one) and the summed notebook seconds."""
    from datetime import datetime, timedelta

    from pdlib.report.results import read_json
    outputs = Path(outputs)
    starts, ends, seconds, n = [], [], 0.0, 0
    for cj in outputs.glob(f"{grid or '*'}/**/cell.json"):
        for st in ((read_json(cj, {}) or {}).get("notebooks") or {}).values():
            seconds += float(st.get("seconds") or 0)
            n += 1
        for mk in (cj.parent / ".done").glob("*"):
            rec = read_json(mk, {}) or {}
            try:
                end = datetime.strptime(str(rec.get("finished")), "%Y-%m-%dT%H:%M:%S")
            except ValueError:
                continue
            ends.append(end)
            starts.append(end - timedelta(seconds=float(rec.get("seconds") or 0)))
    out = {"finished": max(ends).strftime("%Y-%m-%dT%H:%M:%S") if ends else None,
           "started": min(starts).strftime("%Y-%m-%dT%H:%M:%S") if starts else None,
           "notebook_seconds": seconds, "notebooks": n}
    out["wall_seconds"] = (max(ends) - min(starts)).total_seconds() if ends else None
    return out
