"""Figures and tables of notebook 05, the memory breakdown (matplotlib; every axis labelled with
units, every figure captioned), saved as PNG + PDF. They take the frames of
``pdlib.memprof.sweep`` (plain DataFrames); tables go through ``pdlib.report.style``."""
from __future__ import annotations

import numpy as np

from .plots import write_figure
from .style import describe, figure_caption

PARTS = (("model_weights_gb", "weights"), ("kv_cache_gb", "KV cache"), ("activations_gb", "activations"),
         ("framework_overhead_gb", "framework overhead"))


def _labelled(ax, xlabel, ylabel, title):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_breakdown(df, ax=None):
    """Stacked bar per configuration (GB). A negative overhead is drawn below zero."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(max(6, 0.8 * len(df)), 4))[1]
    x = np.arange(len(df))
    pos, neg = np.zeros(len(df)), np.zeros(len(df))
    for col, label in PARTS:
        v = df[col].astype(float).fillna(0).to_numpy()
        bottom = np.where(v >= 0, pos, neg)
        ax.bar(x, v, bottom=bottom, label=label)
        pos, neg = pos + np.clip(v, 0, None), neg + np.clip(v, None, 0)
    if "total_gb" in df and df["total_gb"].notna().any():
        ax.scatter(x, df["total_gb"], marker="_", s=400, color="k", label="measured total", zorder=3)
    ax.set_xticks(x, df["config"], rotation=45, ha="right")
    return _labelled(ax, "configuration (batch B, total sequence length S in tokens)", "memory (GB)",
                     "Memory breakdown per configuration")


def plot_compare(cmp, ax=None):
    """Measured vs calculated per component (GB, log scale), one marker pair per configuration."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    comps = [c for c, _ in PARTS]
    labels = dict(PARTS)
    for i, comp in enumerate(comps):
        d = cmp[cmp["component"] == comp]
        xs = i + np.linspace(-0.25, 0.25, max(len(d), 1))[: len(d)]
        m = d["measured_gb"].astype(float).to_numpy()
        ax.scatter(xs, np.where(m > 0, m, np.nan), marker="o", color="C0", label="measured" if i == 0 else None)
        ax.scatter(xs, d["calculated_gb"].astype(float), marker="x", color="C3",
                   label="calculated (pdlib.theory)" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(range(len(comps)), [labels[c] for c in comps])
    return _labelled(ax, "component", "memory (GB, log scale)",
                     "Measured vs calculated per component")


def plot_error(cmp, ax=None):
    """Calculator error per component (%), one bar group per configuration."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    piv = cmp[cmp["component"] != "total_gb"].pivot(index="config", columns="component", values="error_pct")
    piv = piv[[c for c, _ in PARTS if c in piv]]
    w = 0.8 / max(len(piv.columns), 1)
    for j, c in enumerate(piv.columns):
        ax.bar(np.arange(len(piv)) + j * w, piv[c].astype(float), width=w, label=dict(PARTS)[c])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(piv)) + 0.4 - w / 2, piv.index, rotation=45, ha="right")
    return _labelled(ax, "configuration (batch B, total sequence length S in tokens)",
                     "error (calculated - measured) / measured (%)", "Calculator error per component")


def plot_kv_growth(kv, ax=None):
    """Measured KV bytes against batch x sequence length, with the formula line."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for b, d in kv.groupby("batch_size"):
        ax.scatter(d["tokens"], d["measured_bytes"] / 1e6, label=f"measured, B={b}")
    t = np.sort(kv["tokens"].to_numpy())
    per_tok = (kv["formula_bytes_total_sequence"] / kv["tokens"]).iloc[0]
    ax.plot(t, per_tok * t / 1e6, "k--", label=f"formula: {per_tok:.0f} B/token x B x S")
    return _labelled(ax, "batch x total sequence length (tokens)", "KV cache (MB)",
                     "KV cache growth vs kv_bytes_per_token formula")


CAPTIONS = {
    "breakdown_stacked": "Memory of one generate call per (batch B, total length S), stacked by component; the "
                         "black tick is the measured total. Look at: which component grows with B x S (the KV cache "
                         "and activations should, the weights should not).",
    "measured_vs_calculated": "Left: measured (o) vs calculated (x) GB per component, log scale; right: the "
                              "calculator's signed error per configuration. Look at: components whose error keeps one "
                              "sign across configurations — that coefficient of the calculator is off.",
    "kv_growth": "KV-cache bytes measured from the cache tensors against the formula line. Look at: points on the "
                 "dashed line (one token per sequence below it: the last sampled token is never cached).",
}


def breakdown_table(df):
    """``sweep.breakdown_frame`` shown: one row per configuration, GB per component (+ std)."""
    return describe(df.set_index("config"), headers={"batch_size": "batch B (requests)",
                                                     "seq_len": "total length S (tokens)"},
                    caption="Mean GB (1e9 bytes) per component over the repeats, with the spread (std). Look at: "
                            "framework overhead — a negative one means the other parts overcount.")


def compare_table(cmp):
    """``sweep.compare_frame`` shown: measured vs calculated GB per (configuration, component)."""
    cols = [c for c in ("config", "component", "measured_gb", "calculated_gb", "error_pct", "recommendation")
            if c in cmp]
    return describe(cmp[cols].set_index(["config", "component"]), signed=["error_pct"],
                    headers={"error_pct": "error (calculated − measured)/measured (%)"},
                    caption="The calculator of pdlib.theory against the measurement. Look at: the error column's sign "
                            "and size, and the recommendation naming the coefficient to change.")


def kv_table(kv):
    """``sweep.kv_growth_frame`` shown: KV bytes measured and by the formula per (B, S)."""
    return describe(kv.set_index(["batch_size", "seq_len"]),
                    headers={"batch_size": "batch B (requests)", "seq_len": "total length S (tokens)",
                             "tokens": "B x S (tokens)", "cached_tokens": "cached (tokens)"},
                    caption="KV-cache bytes measured from the cache tensors beside kv_bytes_per_token x tokens. Look "
                            "at: measured equal to the formula on the cached tokens.")


def save_figure(fig, out_dir, name) -> list[str]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir`` with the figure's caption (``CAPTIONS``);
    returns the paths."""
    fig.tight_layout()
    if name in CAPTIONS and not getattr(fig, "_pdlib_captioned", False):
        figure_caption(fig, CAPTIONS[name])
        fig._pdlib_captioned = True
    return [str(p) for p in write_figure(fig, out_dir, name, exts=("png", "pdf"))]
