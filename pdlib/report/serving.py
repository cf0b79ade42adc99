"""A serving-profiler run (``pdlib serve-profile run``, notebook 06) read back from its folder:
KV-cache usage, running/waiting requests and GPU memory over time with request starts and
ends, one panel per condition (every axis labelled with units); and a summary table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pdlib.report.plots import plt
from pdlib.report.style import describe, figure_caption


def load_run(run_dir) -> dict:
    """{'requests','kv','gpu','workload': DataFrames; 'summary','manifest': dicts}."""
    import pandas as pd
    run_dir = Path(run_dir)
    if not (run_dir / "request_trace.csv").is_file():
        raise FileNotFoundError(f"no request_trace.csv in {run_dir} (not a serve-profile run folder?)")

    def csv(name):
        try:
            return pd.read_csv(run_dir / name)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame()

    def js(name):
        p = run_dir / name
        return json.loads(p.read_text()) if p.is_file() else {}
    return {"requests": csv("request_trace.csv"), "kv": csv("kv_trace.csv"), "gpu": csv("gpu_mem_trace.csv"),
            "summary": js("summary.json"), "manifest": js("manifest.json"), "run_dir": run_dir}


def summary_table(run):
    """One row per condition: counts, failures, peak KV usage, TTFT/TPOT percentiles (ms)."""
    import pandas as pd
    summary = run["summary"] if isinstance(run, dict) and "conditions" in run.get("summary", {}) else run
    rows = []
    for cond, s in summary["conditions"].items():
        fails = {k: v for k, v in s["failures"].items() if v}
        pk = s.get("peak_gpu_mem_used_bytes") or {}
        rows.append({"condition": cond, "n": s["n"], "ok": s["n_ok"],
                     "failures": ", ".join(f"{k}:{v}" for k, v in fails.items()) or "-",
                     "peak KV usage (%)": None if s["peak_kv_cache_usage"] is None else 100 * s["peak_kv_cache_usage"],
                     "peak running": s["peak_num_requests_running"], "peak waiting": s["peak_num_requests_waiting"],
                     "peak GPU mem (GiB)": max(pk.values()) / 2**30 if pk and all(pk.values()) else None,
                     **{f"TTFT {q} (ms)": _ms(s["ttft_s"][q]) for q in ("p50", "p90", "p99")},
                     **{f"TPOT {q} (ms)": _ms(s["tpot_s"][q]) for q in ("p50", "p90", "p99")},
                     "out tok/s": s.get("output_tok_per_s")})
    df = pd.DataFrame(rows).set_index("condition")
    return describe(df, headers={"n": "requests (count)", "ok": "ok (count)", "peak running": "peak running (requests)",
                                 "peak waiting": "peak waiting (requests)", "out tok/s": "output tokens/s"},
                    caption="One row per condition (prompt tokens x output tokens x concurrency x prefix reuse). Look "
                            "at: peak KV usage near 100 % together with waiting requests and rising TTFT — the "
                            "server is memory-bound there.")


def _ms(v):
    return None if v is None else 1000.0 * v


def plot_timeline(run, conditions=None, ncols: int = 2):
    """Per condition: KV usage (%) and running/waiting requests vs time since the condition
    started, GPU memory (GiB) when NVML was sampled, request starts (|) and ends (x)."""
    req, kv, gpu = run["requests"], run["kv"], run["gpu"]
    conds = list(conditions or dict.fromkeys(req["condition"]))
    nrows = int(np.ceil(len(conds) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 3.2 * nrows), squeeze=False)
    has_gpu = not gpu.empty and "mem_used_bytes" in gpu and gpu["mem_used_bytes"].notna().any()
    for ax, cond in zip(axes.flat, conds):
        g = req[req["condition"] == cond]
        t0, t1 = g["t_start"].min(), g["t_end"].max()
        pad = max(0.05 * (t1 - t0), 0.2)
        top = 5.0
        if not kv.empty:
            w = kv[(kv["time_s"] >= t0 - pad) & (kv["time_s"] <= t1 + pad)]
            ax.plot(w["time_s"] - t0, 100 * w["kv_cache_usage_perc"], "-", color="C0", label="KV cache usage (%)")
            if w["kv_cache_usage_perc"].notna().any():
                top = max(top, 100 * float(w["kv_cache_usage_perc"].max()))
        ax.set_ylim(0, min(1.25 * top, 125))
        ax.set_xlabel("time since condition start (s)")
        ax.set_ylabel("KV cache usage (%)")
        ok = g["outcome"] == "ok"
        ticks = ax.get_xaxis_transform()   # x in data, y in axes fraction
        ax.plot(g["t_start"] - t0, np.full(len(g), 0.96), "|", color="C2", ms=8, transform=ticks,
                label="request start")
        ax.plot(g.loc[ok, "t_end"] - t0, np.full(int(ok.sum()), 0.91), "x", color="C3", ms=4, transform=ticks,
                label="request end (ok)")
        if (~ok).any():
            ax.plot(g.loc[~ok, "t_end"] - t0, np.full(int((~ok).sum()), 0.86), "v", color="k", ms=5,
                    transform=ticks, label="request failed")
        ax2 = ax.twinx()
        if not kv.empty:
            ax2.step(w["time_s"] - t0, w["num_requests_running"], where="post", color="C1", lw=1, label="running")
            ax2.step(w["time_s"] - t0, w["num_requests_waiting"], where="post", color="C4", lw=1, ls="--",
                     label="waiting")
        ax2.set_ylabel("requests (count)")
        if has_gpu:
            ax3 = ax.twinx()
            ax3.spines["right"].set_position(("axes", 1.15))
            for idx, gg in gpu.dropna(subset=["gpu_index"]).groupby("gpu_index"):
                ww = gg[(gg["time_s"] >= t0 - pad) & (gg["time_s"] <= t1 + pad)]
                ax3.plot(ww["time_s"] - t0, ww["mem_used_bytes"] / 2**30, color="C5", lw=1,
                         label=f"GPU {int(idx)} memory used (GiB)")
            ax3.set_ylabel("GPU memory used (GiB)")
        ax.set_title(cond, fontsize=9)
        if ax is axes.flat[0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(conds):]:
        ax.set_visible(False)
    fig.tight_layout()
    return figure_caption(fig, "Per condition, time since it started: KV-cache usage (%), running and waiting "
                               "requests, GPU memory when sampled; ticks mark request starts, ends and failures. "
                               "Look at: waiting requests appearing when KV usage nears 100 % (admission stalls on "
                               "memory), and failures clustering there.")


def plot_run(run_dir, out_path=None):
    """Timeline figure of a run folder; saved to out_path when given."""
    fig = plot_timeline(load_run(run_dir))
    if out_path:
        fig.savefig(out_path, dpi=120, bbox_inches="tight")
    return fig
