"""Seaborn figures: where seaborn is the better tool than bare matplotlib — distributions (input
vs output lengths: histogram and ECDF on a log axis, against the paper's geometric lengths) and
faceted comparisons (throughput per fixed k, one panel per view, engine vs simulator vs theory
with their 95 % intervals). Axis labels carry units, captions say what to look at
(``style.figure_caption``); saved with ``plots.save_figure`` (kinds ``length_distributions``,
``throughput_facets``). Plain data in (arrays, the sweep's row dicts), never engines."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pdlib.report.plots import plt
from pdlib.report.style import figure_caption, fmt


def geometric_cdf(x, mean: float):
    """P(L <= x) for L ~ Geometric(p) on {1, 2, ...} with p = 1/mean: 1 - (1 - p)^floor(x)
    (the paper's output-length model, Sec. 3: each decode step ends a request with probability p)."""
    p = 1.0 / float(mean)
    x = np.floor(np.asarray(x, float))
    return np.where(x >= 1, 1.0 - (1.0 - p) ** np.maximum(x, 0), 0.0)


def length_distributions(input_lens, output_lens, *, dataset: str, title: str = ""):
    """Input vs output lengths (tokens): a histogram and an ECDF on a log axis (seaborn), with
    the geometric ECDF of the same mean output (the paper's assumption) over the output's."""
    import seaborn as sns
    df = pd.concat([pd.DataFrame({"tokens": np.asarray(input_lens, float), "length": "input (prompt)"}),
                    pd.DataFrame({"tokens": np.asarray(output_lens, float), "length": "output"})],
                   ignore_index=True)
    df = df[df["tokens"] > 0]
    fig, ax = plt.subplots(1, 2, figsize=(11.5, 4.2))
    if df.empty:
        for a in ax:
            a.text(0.5, 0.5, "no requests", ha="center")
        return fig
    sns.histplot(df, x="tokens", hue="length", log_scale=True, element="step", stat="count", common_bins=True,
                 ax=ax[0])
    ax[0].set(xlabel="length (tokens, log scale)", ylabel="requests (count)", title="Histogram")
    sns.ecdfplot(df, x="tokens", hue="length", log_scale=True, ax=ax[1])
    out = df.loc[df["length"] == "output", "tokens"].to_numpy()
    if out.size:
        xs = np.unique(np.geomspace(1, max(out.max(), 2), 200).round())
        ax[1].plot(xs, geometric_cdf(xs, out.mean()), "k:", lw=1.2,
                   label=f"geometric, same mean {fmt(out.mean())} tokens (paper)")
        handles = ax[1].get_legend().legend_handles if ax[1].get_legend() else []
        labels = [t.get_text() for t in ax[1].get_legend().get_texts()] if ax[1].get_legend() else []
        h_geo = ax[1].lines[-1]
        ax[1].legend(list(handles) + [h_geo], labels + [h_geo.get_label()], fontsize=8, title="length")
    ax[1].set(xlabel="length (tokens, log scale)", ylabel="fraction of requests ≤ x", title="ECDF")
    fig.suptitle(title or f"{dataset}: input vs output lengths (n = {len(df) // 2 if len(df) else 0} requests)")
    fig.tight_layout()
    return figure_caption(fig, "Prompt and output lengths per request, same log axis. Look at: the output ECDF "
                               "against the dotted geometric curve of the same mean — the paper's p = 1/mean "
                               "formulas assume they coincide; a steeper ECDF (less spread) makes κ and the OOM "
                               "bound pessimistic, a longer tail makes them optimistic.")


def _long(sweep_rows, sim_rows, theory) -> pd.DataFrame:
    """One row per (k, source, view): value and its 95 % interval where there is one."""
    rows = []
    best = max((r["requests_per_s"] for r in sweep_rows), default=None)
    for src, rs in (("engine (measured)", sweep_rows), ("simulator", sim_rows or [])):
        for r in rs:
            ci = r.get("steady_requests_per_s_ci") or [None, None]
            rows.append({"k": r["k"], "source": src, "view": "end to end (requests/s)", "value": r["requests_per_s"]})
            if r.get("steady_requests_per_s") is not None:
                rows.append({"k": r["k"], "source": src, "view": "steady state, 95 % CI (requests/s)",
                             "value": r["steady_requests_per_s"], "lo": ci[0], "hi": ci[1]})
            if best:
                rows.append({"k": r["k"], "source": src, "view": "% of the best measured k",
                             "value": 100 * r["requests_per_s"] / best})
    if theory is not None:
        for k, v in zip(theory["k"], theory["requests_per_s"]):
            rows.append({"k": k, "source": "theory", "view": "end to end (requests/s)", "value": v})
            if best:
                rows.append({"k": k, "source": "theory", "view": "% of the best measured k", "value": 100 * v / best})
    df = pd.DataFrame(rows, columns=["k", "source", "view", "value", "lo", "hi"])
    return df.astype({"value": float, "lo": float, "hi": float})


def throughput_facets(sweep_rows, *, k_star: int, k_hat: int, sim_rows=None, theory=None, title: str = ""):
    """Throughput per fixed k in three panels (seaborn ``relplot``, one column per view): end to
    end, steady state with each run's 95 % interval (ratio batch means over MSER-5 cycles), and
    as % of the best measured k; engine, simulator and theory as hues."""
    import seaborn as sns
    df = _long(sweep_rows, sim_rows, theory)
    views = [v for v in ("end to end (requests/s)", "steady state, 95 % CI (requests/s)", "% of the best measured k")
             if (df["view"] == v).any()]
    g = sns.relplot(df, x="k", y="value", hue="source", style="source", col="view", col_order=views, kind="line",
                    markers=True, dashes=False, height=3.6, aspect=1.05, facet_kws={"sharey": False})

    def bars(data, color=None, **_):
        d = data.dropna(subset=["lo", "hi"])
        if len(d):
            plt.errorbar(d["k"], d["value"], yerr=[d["value"] - d["lo"], d["hi"] - d["value"]], fmt="none",
                         ecolor=color, capsize=3, alpha=0.8)
    g.map_dataframe(bars)
    for ax, view in zip(g.axes.flat, views):
        ax.axvline(k_star, color="r", ls="--", lw=1)
        ax.axvline(k_hat, color="g", ls="-.", lw=1)
        ax.set_title(view, fontsize=10)
        ax.set_xlabel("refill size k (requests)")
        ax.set_ylabel("% of the best measured throughput" if view.startswith("%") else "throughput (requests/s)")
    g.figure.suptitle(title or f"Throughput per fixed k (k* = {k_star} red dashed, k̂ = {k_hat} green)", y=1.02)
    return figure_caption(g.figure, f"Each panel is one view of the same fixed-k runs; bars are 95 % intervals of the "
                                    f"steady-state throughput. Look at: whether the engine's and the simulator's "
                                    f"intervals overlap at each k (they should if the fitted timing is right), and "
                                    f"how many % below 100 the curve sits at k* = {k_star}.")
