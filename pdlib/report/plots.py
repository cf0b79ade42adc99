"""Figures for the reports. Every figure has axis labels with units and a caption saying what
to look at (``style.figure_caption``, drawn in the figure); ``save_figure`` writes
PDF and PNG beside the cell's JSON under the seeds' names (``{dataset}_throughput_vs_k``...).
Functions take plain data (dicts, arrays, DataFrames), never engines."""
from __future__ import annotations

from pathlib import Path

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "ipympl", "widget")):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from pdlib.report.style import figure_caption, fmt

FIGURE_NAMES = {
    "profiling": "{dataset}_profiling_results",
    "input_hist": "{dataset}_input_length_distribution",
    "output_hist": "{dataset}_output_length_distribution",
    "throughput_vs_k": "{dataset}_throughput_vs_k",
    "kstar_convergence": "{dataset}_online_kstar_convergence",
    "memory": "{dataset}_memory_validation",
    "timeline": "{dataset}_pd_timeline",
    "budget": "{dataset}_budget",
    "length_distributions": "{dataset}_length_distributions",
    "throughput_facets": "{dataset}_throughput_vs_k_facets",
}


def save_figure(fig, output_dir, kind: str, dataset: str) -> list[Path]:
    """Save ``fig`` as PDF and PNG named after the seeds (see ``FIGURE_NAMES``)."""
    return write_figure(fig, output_dir, FIGURE_NAMES[kind].format(dataset=dataset))


def write_figure(fig, output_dir, stem: str, exts=("pdf", "png")) -> list[Path]:
    """Write ``{stem}.{ext}`` for each ext into ``output_dir`` (atomically, 120 dpi, tight bbox)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in exts:
        p = out / f"{stem}.{ext}"
        tmp = out / f".{stem}.tmp.{ext}"
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=ext)
        tmp.replace(p)
        paths.append(p)
    return paths


def profiling_figure(prof, resid: dict, title: str = ""):
    """2x2: prefill time vs tokens and decode step time vs batch with the fitted lines; residuals."""
    t = prof.timing
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    pt = np.array([r["tokens"] for r in prof.prefill], float)
    ps = np.array([r["seconds"] for r in prof.prefill], float)
    db = np.array([r["batch"] for r in prof.decode], float)
    ds = np.array([r["seconds"] for r in prof.decode], float)
    xs = np.linspace(0, pt.max() if pt.size else 1, 50)
    ax[0, 0].scatter(pt, ps * 1e3, s=12, label="measured")
    ax[0, 0].plot(xs, t.prefill_time(xs) * 1e3, "r-",
                  label=f"fit: {t.alpha_p*1e3:.3g} ms + {t.beta_p*1e6:.3g} us/token (R²={t.r2_prefill:.3f})")
    ax[0, 0].set(xlabel="prompt tokens in the prefill step (tokens)", ylabel="prefill time (ms)", title="Prefill")
    xb = np.linspace(0, db.max() if db.size else 1, 50)
    ax[0, 1].scatter(db, ds * 1e3, s=12, label="measured")
    ax[0, 1].plot(xb, t.decode_time(xb) * 1e3, "r-",
                  label=f"fit: {t.alpha_d*1e3:.3g} ms + {t.beta_d*1e3:.3g} ms/request (R²={t.r2_decode:.3f})")
    ax[0, 1].set(xlabel="decode batch size (requests)", ylabel="decode step time (ms)", title="Decode")
    ax[1, 0].scatter(resid["prefill_tokens"], np.asarray(resid["prefill_resid_s"]) * 1e3, s=10)
    ax[1, 0].axhline(0, color="k", lw=0.8)
    ax[1, 0].set(xlabel="prompt tokens (tokens)", ylabel="residual (ms)", title="Prefill residuals")
    ax[1, 1].scatter(resid["decode_batch"], np.asarray(resid["decode_resid_s"]) * 1e3, s=10)
    ax[1, 1].axhline(0, color="k", lw=0.8)
    ax[1, 1].set(xlabel="decode batch size (requests)", ylabel="residual (ms)", title="Decode residuals")
    for a in ax[0]:
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_caption(fig, "Top: measured step times (dots) and the two-term fit (red line). Bottom: residuals "
                               "(measured − fit). Look at: residuals scattered evenly around 0 — a trend or a "
                               "funnel means the linear timing model, and so k*, misses a cost (e.g. context length).")


def length_histogram(lengths, *, what: str, dataset: str, bins: int = 40):
    """Histogram of input or output lengths (tokens) with mean and p95 marked."""
    import seaborn as sns
    x = np.asarray(lengths, float)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.histplot(x=x, bins=bins, color="C0" if what == "input" else "C1", alpha=0.8, ax=ax)
    if x.size:
        ax.axvline(x.mean(), color="k", ls="--", label=f"mean {fmt(x.mean())} tokens")
        ax.axvline(np.percentile(x, 95), color="r", ls=":", label=f"p95 {fmt(np.percentile(x, 95))} tokens")
        ax.legend()
    ax.set(xlabel=f"{what} length (tokens)", ylabel="requests (count)", title=f"{dataset}: {what} lengths (n={x.size})")
    fig.tight_layout()
    look = ("how far the p95 line sits from the mean: the KV memory a request holds grows with its prompt"
            if what == "input" else "the shape of the tail: the paper assumes geometric (exponential-like) output "
            "lengths with p = 1/mean; a hump or a cap at max_tokens breaks that")
    return figure_caption(fig, f"Histogram of {what} lengths, tokens per request. Look at: {look}.")


def throughput_vs_k(sweep_rows, *, k_star: int, k_hat: int, sim_rows=None, theory=None, online_rps=None,
                    title: str = "", k_star_range=None):
    """Measured requests/s vs fixed k, with the simulator's and the theory's curves, k*, k_hat
    and the online-k* run's throughput; the steady-state 95 % interval of each run (rows with
    ``steady_requests_per_s_ci``) as error bars, and ``k_star_range`` ((lo, hi): k* over the
    95 % interval of p) shaded."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ks = [r["k"] for r in sweep_rows]
    ax.plot(ks, [r["requests_per_s"] for r in sweep_rows], "o-", label="engine (measured)")
    ci = [(r["k"], r["steady_requests_per_s"], *r["steady_requests_per_s_ci"]) for r in sweep_rows
          if r.get("steady_requests_per_s_ci") and None not in r["steady_requests_per_s_ci"]
          and r.get("steady_requests_per_s") is not None]
    if ci:
        c = np.asarray(ci, float)
        ax.errorbar(c[:, 0], c[:, 1], yerr=np.vstack([c[:, 1] - c[:, 2], c[:, 3] - c[:, 1]]), fmt="none",
                    ecolor="C0", alpha=0.6, capsize=3, label="engine, steady state (95 % CI)")
    if k_star_range and None not in tuple(k_star_range):
        ax.axvspan(k_star_range[0] - 0.1, k_star_range[1] + 0.1, color="r", alpha=0.08,
                   label=f"k* over the 95 % CI of p: {k_star_range[0]}–{k_star_range[1]}")
    if sim_rows:
        ax.plot([r["k"] for r in sim_rows], [r["requests_per_s"] for r in sim_rows], "s--",
                label="simulator (fitted timing, same lengths)")
    if theory is not None:
        ax.plot(theory["k"], theory["requests_per_s"], ":", color="gray", label="theory k/(α_p+β_p k μ_L+Σ τ)")
    ax.axvline(k_star, color="r", ls="--", label=f"k* = {k_star}")
    ax.axvline(k_hat, color="g", ls="-.", label=f"k̂ = {k_hat}")
    if online_rps is not None:
        ax.axhline(online_rps, color="purple", ls=":", label=f"online k* (EMA p): {online_rps:.3g} req/s")
    ax.set(xlabel="refill size k (requests)", ylabel="throughput (requests/s)", title=title or "Throughput vs k")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_caption(fig, f"Measured throughput for each fixed refill size k. Look at: whether the red k* = "
                               f"{k_star} line falls at the peak of the measured curve (k̂ = {k_hat}, green), and "
                               "whether the simulator's and the theory's curves follow the engine's shape.")


def kstar_convergence(history, *, k_star_offline: int, k_hat: int | None = None, p_offline: float | None = None,
                      title: str = "", p_interval=None):
    """Online EMA p and the recomputed k* against completions; ``p_interval`` ((lo, hi): the
    95 % interval of the offline p) shaded."""
    h = np.asarray(history, float).reshape(-1, 3)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].step(h[:, 0], h[:, 1], where="post", label="EMA p")
    if p_offline is not None:
        ax[0].axhline(p_offline, color="k", ls="--", label=f"offline p = {p_offline:.4g}")
    if p_interval and None not in tuple(p_interval):
        ax[0].axhspan(p_interval[0], p_interval[1], color="k", alpha=0.08,
                      label=f"95 % CI of offline p [{p_interval[0]:.3g}, {p_interval[1]:.3g}]")
    ax[0].set(xlabel="completed requests (count)", ylabel="p (per decode step)", title="Online p")
    ax[1].step(h[:, 0], h[:, 2], where="post", label="online k*")
    ax[1].axhline(k_star_offline, color="r", ls="--", label=f"offline k* = {k_star_offline}")
    if k_hat is not None:
        ax[1].axhline(k_hat, color="g", ls="-.", label=f"k̂ = {k_hat}")
    ax[1].set(xlabel="completed requests (count)", ylabel="k (requests)", title="k* convergence")
    ax[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    for a in ax:
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_caption(fig, f"The online estimator as requests complete: EMA p (left) and the k* it gives (right). "
                               f"Look at: p settling inside the offline 95 % band and k* settling at the offline "
                               f"k* = {k_star_offline}; long swings mean M or the EMA weight is too small.")


def memory_validation(cyc, th: dict, bound: dict, title: str = ""):
    """The four-panel figure: X0 vs E[X0]; Xmax vs E[Xmax]; sup Y vs kappa; OOM bound vs the
    empirical tail (log scale). ``cyc`` has columns X0, Xmax, supY (KV tokens)."""
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for a, col, ref, lab in ((ax[0, 0], "X0", th["E_X0"], "E[X0] = N·D(θ)"),
                             (ax[0, 1], "Xmax", th["E_Xmax"], "E[Xmax] ≈ E[X0] + κ"),
                             (ax[1, 0], "supY", th["kappa"], "κ = 1/(p² μ_L)")):
        v = np.asarray(cyc[col], float)
        a.hist(v, bins=min(30, max(5, v.size // 3)), alpha=0.75)
        a.axvline(ref, color="r", ls="--", label=f"{lab} = {fmt(ref)}")
        if v.size:
            a.axvline(v.mean(), color="k", ls="-", label=f"measured mean = {fmt(v.mean())}")
        a.set(xlabel=f"{'sup Y' if col == 'supY' else col} per cycle (KV tokens)", ylabel="cycles (count)")
        a.legend(fontsize=8)
    if "E_X0_seed000_misprint" in th:
        ax[0, 0].axvline(th["E_X0_seed000_misprint"], color="orange", ls=":",
                         label=f"seed 000 (1-θ)² = {fmt(th['E_X0_seed000_misprint'])}")
        ax[0, 0].legend(fontsize=8)
    a = ax[1, 1]
    x = np.asarray(bound["x"], float)
    emp = np.asarray(bound["empirical"], float)
    a.semilogy(x, np.where(emp > 0, emp, np.nan), "o-", ms=3, label="empirical P(sup Y > x)")
    a.semilogy(x, np.asarray(bound["bound"], float), "r--", label="bound exp(-2|d|x/v)")
    a.set(xlabel="x (KV tokens)", ylabel="probability (log scale)",
          title=f"OOM bound valid at {bound['valid_pct']:.0f}% of x")
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_caption(fig, "Per steady-state cycle: KV tokens held at refill (X0), the cycle's peak (Xmax) and "
                               "the excursion above X0 (sup Y), against the paper's predictions (red dashed); bottom "
                               "right, the empirical tail against the OOM bound. Look at: the distance between the "
                               "black measured mean and the red prediction, and the blue tail staying under the red "
                               "bound.")


def timeline(tl: dict, title: str = ""):
    """Phase timeline: KV tokens held and batch size over time, prefill steps shaded."""
    start = np.asarray(tl["start_s"], float)
    dur = np.asarray(tl["duration_s"], float)
    phase = np.asarray(tl["phase"])
    fig, ax = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    ax[0].plot(start + dur, tl["kv_tokens"], lw=1)
    ax[0].set(ylabel="KV tokens held (tokens)")
    ax[1].step(start, tl["batch_size"], where="post", lw=1)
    ax[1].set(xlabel="time (s)", ylabel="batch size (requests)")
    for s, d in zip(start[phase == "prefill"], dur[phase == "prefill"]):
        for a in ax:
            a.axvspan(s, s + d, color="orange", alpha=0.3, lw=0)
    ax[0].set_title(title or "Prefill (shaded) / decode timeline")
    fig.tight_layout()
    return figure_caption(fig, "KV tokens held (top) and the decode batch (bottom) step by step; orange bands are "
                               "prefill steps. Look at: the saw-tooth — the batch drains to N − k, one prefill "
                               "refills k slots — and prefills stalling decode while they run.")


def grid_summary(summary, title: str = ""):
    """Per cell: gap % (k* vs k_hat) and the memory errors vs theory (%), bars."""
    fig, ax = plt.subplots(1, 2, figsize=(12, max(3.0, 0.45 * len(summary) + 1.5)))
    if len(summary) == 0:
        for a in ax:
            a.text(0.5, 0.5, "no cells", ha="center")
        return fig
    names = list(summary["cell"])
    y = np.arange(len(names))
    gap = np.array([np.nan if v is None else v for v in summary.get("gap_pct", [None] * len(names))], float)
    ax[0].barh(y, np.nan_to_num(gap), color="C0")
    ax[0].set(yticks=y, yticklabels=names, xlabel="throughput gap k* vs k̂ (%)", title="k* vs k̂")
    w = 0.27

    def col_of(name):
        return np.array([np.nan if x is None else x for x in summary.get(name, [None] * len(names))], float)

    for i, (col, lab) in enumerate((("X0_err_pct", "X0"), ("Xmax_err_pct", "Xmax"), ("kappa_err_pct", "κ"))):
        v = col_of(col)
        q = col.split("_")[0]
        lo, hi = col_of(f"{q}_err_lo"), col_of(f"{q}_err_hi")
        ax[1].barh(y + (i - 1) * w, np.nan_to_num(v), height=w, label=lab)
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(v)
        if ok.any():                                         # the 95 % interval of the signed error
            ax[1].errorbar(v[ok], (y + (i - 1) * w)[ok], xerr=np.vstack([v[ok] - lo[ok], hi[ok] - v[ok]]),
                           fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax[1].axvline(0, color="k", lw=0.8)
    ax[1].set(yticks=y, yticklabels=names, xlabel="signed error of the theory, prediction/measured − 1 (%), 95 % CI",
              title="memory (KV tokens)")
    ax[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_caption(fig, "Left: throughput lost by running k* instead of the best measured k (%). Right: signed "
                               "errors of the memory predictions with 95 % intervals. Look at: bars far from 0 and "
                               "intervals that do not cross 0 — those cells disagree with the theory.")


def budget_figure(table):
    """Seed 004's budget per case: b_mem and b_target for the mean and the p95 request, bars
    (``table``: ``pdlib.budget.seed_vs_corrected`` or ``budget_table`` rows)."""
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(table) + 2))
    y = np.arange(len(table))
    for i, col in enumerate(["b_mem", "b_mem_p95", "b_target", "b_target_p95"]):
        if col in table:
            ax.barh(y + (i - 1.5) * 0.2, table[col].astype(float), height=0.2, label=col)
    ax.set(yticks=y, yticklabels=[str(i) for i in table.index], xlabel="batch size (requests)",
           ylabel="case (GPU x model)", title="Seed 004 budget: memory-bound and target batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_caption(fig, "Largest batch the KV memory allows (b_mem) and the batch to run (b_target = min(b_mem, "
                               "b_SLA, B_MAX)) per case, for the mean and the p95 request. Look at: how far the "
                               "seed's stated case sits from the corrected ones.")
