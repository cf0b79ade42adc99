"""GPU budget (notebook 04): seed 004's chain from ``pdlib.budget`` for the seed's stated
numbers, the corrected cases, a chosen GPU x model, and every pair of the built-in tables.
All functions are plain (the widgets in ``pdlib.report.widgets`` call them)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from pdlib import budget

SHOW = ["gpu", "model", "dtype", "M_max_GB", "M_model_GB", "kv_bytes_per_token", "eta", "L0", "b_mem", "b_mem_p95",
        "b_SLA", "b_SLA_p95", "b_target", "b_target_p95"]


def _gb(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "M_max_bytes" in df:
        df["M_max_GB"] = df["M_max_bytes"] / 1e9
        df["M_model_GB"] = df["M_model_bytes"] / 1e9
    return df


def budget_rows(gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                sla_ms=1000.0, B_MAX=128) -> pd.DataFrame:
    """One GPU x model: seed 004's budget (eta, L0, b_mem, b_SLA, b_target for the mean and p95
    request) as a one-row table; a model that does not fit gives a row saying so."""
    try:
        r = budget.gpu_budget(gpu, model, dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                              sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
        df = _gb(pd.DataFrame([r]))
        return df[[c for c in SHOW if c in df]].set_index(["gpu", "model"]).round(3)
    except ValueError as e:
        return pd.DataFrame([{"gpu": gpu, "model": model, "error": str(e)}]).set_index(["gpu", "model"])


def seed_vs_corrected(gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                      sla_ms=1000.0, B_MAX=128) -> pd.DataFrame:
    """Seed 004 as stated, the corrected RTX 4080 cases, and the chosen GPU x model."""
    df = budget.seed004_comparison(mean_tokens, p95_tokens, sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
    sel = budget.gpu_budget(gpu, model, dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                            sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
    df = pd.concat([df, pd.DataFrame([sel], index=pd.Index([f"chosen: {gpu} x {model} ({dtype})"], name="case"))])
    df = _gb(df)
    return df[[c for c in SHOW if c in df]]


def all_pairs(dtype="fp16", mean_tokens=500, p95_tokens=1000, sla_ms=1000.0, B_MAX=128) -> pd.DataFrame:
    """Every GPU x model of the built-in tables."""
    df = _gb(budget.budget_table(dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                                 sla_s=sla_ms / 1e3, B_MAX=int(B_MAX)))
    cols = [c for c in SHOW + ["fits"] if c in df]
    return df[cols].set_index(["gpu", "model"]).round(3)


def budget_figure(table: pd.DataFrame):
    """b_mem and b_target (mean and p95 request) per case, bars."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(table) + 2))
    y = np.arange(len(table))
    for i, col in enumerate(["b_mem", "b_mem_p95", "b_target", "b_target_p95"]):
        if col in table:
            ax.barh(y + (i - 1.5) * 0.2, table[col].astype(float), height=0.2, label=col)
    ax.set(yticks=y, yticklabels=[str(i) for i in table.index], xlabel="batch size (requests)",
           title="Seed 004 budget: memory-bound and target batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
