"""The summary of one profiling run (``summary.json``): per condition the request statistics
(TTFT, TPOT, failures by kind) and the KV-cache peaks from the ``/metrics`` samples that overlap
the condition, with the number of such samples (a condition with none says so, never 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .requests import FAILURE_KINDS, percentiles
from .samplers import KV_METRICS


def _read_csv(path, numeric=()):
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError):   # a row torn by a kill
        df = pd.read_csv(path, on_bad_lines="skip", encoding_errors="replace")
    for col in numeric:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


REQ_NUMERIC = ("input_len", "output_len", "concurrency", "t_start", "t_first_token", "t_end", "ttft_s", "tpot_s",
               "latency_s", "tokens_in", "tokens_out", "http_status")
# kv_trace column -> summary key of its peak
KV_PEAKS = {"kv_cache_usage_perc": "peak_kv_cache_usage", "num_requests_running": "peak_num_requests_running",
            "num_requests_waiting": "peak_num_requests_waiting"}


def _peak(df, col, t0, t1, time_col="time_s"):
    if df.empty or col not in df or t0 is None:
        return None
    v = df.loc[(df[time_col] >= t0) & (df[time_col] <= t1), col].dropna()
    return float(v.max()) if len(v) else None


def kv_window(kv, t0, t1):
    """The /metrics samples whose interval [t_sent, time_s] overlaps [t0, t1]: the server read
    the gauge somewhere in that interval."""
    return kv[(kv["t_sent"] <= t1) & (kv["time_s"] >= t0)]


def _kv_stats(kv, t0, t1) -> dict:
    out = {"kv_samples": 0, "kv_scrapes_failed": 0, **dict.fromkeys(KV_PEAKS.values()), "kv_note": None}
    if t0 is None:
        out["kv_note"] = "no request of this condition was sent"
        return out
    if kv.empty:
        out["kv_note"] = "no /metrics samples in this run"
        return out
    w = kv_window(kv, t0, t1)
    got = w["kv_cache_usage_perc"].notna()
    out["kv_samples"] = int(got.sum())
    out["kv_scrapes_failed"] = int(w["error"].notna().sum()) if "error" in w else 0
    for col, key in KV_PEAKS.items():
        v = w[col].dropna() if col in w else ()
        out[key] = float(v.max()) if len(v) else None
    if not out["kv_samples"]:
        if w.empty:
            out["kv_note"] = f"no /metrics scrape overlapped this condition ({t1 - t0:.3f} s long)"
        elif out["kv_scrapes_failed"] == len(w):
            out["kv_note"] = f"all {len(w)} /metrics scrapes overlapping this condition failed"
        else:
            out["kv_note"] = "the /metrics answers overlapping this condition had no vllm:kv_cache_usage_perc"
    return out


def _stats(req, kv, gpu) -> dict:
    sent = req[req["outcome"] != "not_sent"]
    t0, t1 = (float(sent["t_start"].min()), float(sent["t_end"].max())) if len(sent) else (None, None)
    if t0 is not None and not (np.isfinite(t0) and np.isfinite(t1)):
        t0 = t1 = None
    ok = req[req["outcome"] == "ok"]
    counts = req["outcome"].value_counts().to_dict()
    out = {"n": len(req), "n_ok": len(ok),
           "failures": {k: int(counts.get(k, 0)) for k in FAILURE_KINDS},
           "t_start": t0, "t_end": t1, "duration_s": None if t0 is None else t1 - t0,
           "tokens_in": int(ok["tokens_in"].fillna(0).sum()), "tokens_out": int(ok["tokens_out"].fillna(0).sum()),
           "ttft_s": percentiles(ok["ttft_s"]), "tpot_s": percentiles(ok["tpot_s"]),
           "latency_s": percentiles(ok["latency_s"]), **_kv_stats(kv, t0, t1)}
    out["output_tok_per_s"] = out["tokens_out"] / out["duration_s"] if out["duration_s"] else None
    peaks = {}
    if not gpu.empty and "mem_used_bytes" in gpu:
        for idx, g in gpu.dropna(subset=["gpu_index"]).groupby("gpu_index"):
            peaks[str(int(idx))] = _peak(g, "mem_used_bytes", t0, t1)
    out["peak_gpu_mem_used_bytes"] = peaks or None
    return out


def _sampler_stats(kv) -> dict:
    if kv.empty:
        return {"samples": 0}
    t = kv.sort_values("t_sent")
    lat = (kv["time_s"] - kv["t_sent"]).dropna()
    gaps = t["t_sent"].diff().dropna()
    return {"samples": int(kv["kv_cache_usage_perc"].notna().sum()), "scrapes": len(kv),
            "failed": int(kv["error"].notna().sum()) if "error" in kv else 0,
            "answer_time_s": percentiles(lat), "max_gap_between_scrapes_s": float(gaps.max()) if len(gaps) else None}


def _int(v):
    return int(v) if v is not None and np.isfinite(v) else None


def _plain(obj):
    """NaN/inf -> None, numpy scalars -> Python (summary.json stays strict JSON)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def summarize(run_dir, sampler: dict | None = None) -> dict:
    """summary.json content from the run folder's CSVs (works on partial runs). Per condition
    (and overall): counts by outcome, token totals, TTFT/TPOT/latency percentiles of the ok
    requests, and from /metrics the peaks over the samples overlapping the condition's span
    (first request sent .. last request ended) with ``kv_samples``, their number; with none
    the peaks are null and ``kv_note`` says why."""
    run_dir = Path(run_dir)
    req = _read_csv(run_dir / "request_trace.csv", REQ_NUMERIC)
    kv = _read_csv(run_dir / "kv_trace.csv", ("time_s", "t_sent", *KV_METRICS))
    gpu = _read_csv(run_dir / "gpu_mem_trace.csv", ("time_s", "gpu_index", "mem_used_bytes"))
    if not kv.empty:
        if "t_sent" not in kv:     # a run from before scrapes carried their send time
            kv["t_sent"] = kv["time_s"]
        kv["t_sent"] = kv["t_sent"].fillna(kv["time_s"])
        kv = kv.dropna(subset=["time_s"])
    notes = []
    if not gpu.empty and "note" in gpu and gpu["mem_used_bytes"].isna().all():
        notes += sorted(set(gpu["note"].dropna().astype(str)))
    if not kv.empty and "error" in kv:
        n_err = int(kv["error"].notna().sum())
        if n_err:
            notes.append(f"{n_err} of {len(kv)} /metrics scrapes failed")
    if sampler and sampler.get("error"):
        notes.append(f"/metrics sampler: {sampler['error']}")
    out = {"run_id": run_dir.name, "notes": notes, "kv_sampler": {**(sampler or {}), **_sampler_stats(kv)},
           "conditions": {}}
    if req.empty or "request_id" not in req:
        out["overall"] = {"n": 0, "n_ok": 0, "failures": {k: 0 for k in FAILURE_KINDS}}
        return _plain(out)
    req = req.dropna(subset=["request_id"]).drop_duplicates("request_id", keep="last")  # a resumed run's retries replace the failures
    for cond, g in req.groupby("condition", sort=False):
        first = g.iloc[0]
        out["conditions"][cond] = {**{k: _int(first[k]) for k in ("input_len", "output_len", "concurrency")},
                                   "prefix_mode": first["prefix_mode"], **_stats(g, kv, gpu)}
    out["overall"] = _stats(req, kv, gpu)
    return _plain(out)
