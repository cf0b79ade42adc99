"""Summary of a workload's lengths: count, mean / median / p95 / max of input and output
tokens, and the offline p = 1 / mean(output) (biased high when outputs were capped)."""
from __future__ import annotations

import numpy as np

from pdlib.workload import skip_reason_counts


def _summary(x: np.ndarray, prefix: str) -> dict:
    if x.size == 0:
        return {f"{prefix}_{k}": None for k in ("mean", "median", "p95", "max")}
    return {f"{prefix}_mean": float(x.mean()), f"{prefix}_median": float(np.median(x)),
            f"{prefix}_p95": float(np.percentile(x, 95)), f"{prefix}_max": int(x.max())}


def workload_stats(workload) -> dict:
    """Keys: dataset, count, input_{mean,median,p95,max}, output_{mean,median,p95,max}, p, skipped,
    skip_reasons ({reason: count}), truncated, tokenizer ("counts from the trace" for a length trace),
    plus prompt_only, tokenizer_note (a tokenizer given for a trace is not used) and a note when they matter.
    Output statistics and p use only requests with a reference output (prompt-only requests are excluded)."""
    meta = workload.meta or {}
    prompt_only = set(meta.get("prompt_only_ids") or ())
    inp = workload.input_lens
    out = workload.output_lens
    if prompt_only:
        out = out[np.array([r.id not in prompt_only for r in workload.requests], dtype=bool)]
    d = {"dataset": workload.name, "count": len(workload.requests)}
    d.update(_summary(inp, "input"))
    d.update(_summary(out, "output"))
    d["p"] = float(1.0 / out.mean()) if out.size else None
    d["skipped"] = len(workload.skipped)
    d["skip_reasons"] = skip_reason_counts(workload.skipped)
    d["truncated"] = workload.num_truncated
    d["tokenizer"] = meta.get("tokenizer")
    if d["tokenizer"] is None and str(meta.get("lengths") or "").startswith("counts from the trace"):
        d["tokenizer"] = "counts from the trace"     # a length trace: no tokenizer of ours counted these
        d["lengths"] = meta["lengths"]
    if meta.get("tokenizer_note"):
        d["tokenizer_note"] = meta["tokenizer_note"]
    if prompt_only:
        d["prompt_only"] = len(prompt_only)
    if d["truncated"]:
        d["note"] = (f"{d['truncated']} outputs capped at max_output_tokens: mean output is biased low and "
                     f"p = 1/mean biased high")
    elif meta.get("lengths") and meta.get("tokenizer") is None and "lengths" not in d:
        d["note"] = meta["lengths"]
    return d
