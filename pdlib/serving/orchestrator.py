"""One profiling run -> ``<OUTPUT_DIR>/<run_id>/``: workload.jsonl, request_trace.csv,
gpu_mem_trace.csv, kv_trace.csv, summary.json, manifest.json.

The samplers run for the whole run; the request runner walks the conditions one after
another. Files are written as the run goes (CSV rows flushed one by one, JSON atomically), so
an interrupted run keeps its rows and ``run_profile(..., run_dir=existing)`` resumes it
(requests already ``ok`` are not sent again).
"""
from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from pathlib import Path

from ..records import atomic_write_json
from .config import ServingConfig
from .requests import FAILURE_KINDS, done_request_ids, percentiles, run_requests_async
from .samplers import GpuSampler, MetricsSampler, cache_info, nvml_probe, parse_prometheus
from .workload import (
    PromptBuilder,
    build_workload,
    default_tokenizer_path,
    load_tokenizer,
    read_workload,
    write_workload,
)

FILES = ("workload.jsonl", "request_trace.csv", "gpu_mem_trace.csv", "kv_trace.csv", "summary.json",
         "manifest.json")


class ServerUnreachable(RuntimeError):
    """The server did not answer (message is one line)."""


def probe_server(url: str, timeout: float = 10.0) -> dict:
    """Server info from /v1/models, /version and /metrics; raises ServerUnreachable."""
    import httpx
    info: dict = {"url": url}
    try:
        r = httpx.get(f"{url}/v1/models", timeout=timeout)
        r.raise_for_status()
        info["models"] = r.json().get("data", [])
    except httpx.HTTPStatusError as e:
        raise ServerUnreachable(f"server at {url} answered /v1/models with HTTP {e.response.status_code}") from None
    except (httpx.HTTPError, ValueError) as e:
        raise ServerUnreachable(f"cannot reach server at {url} ({type(e).__name__}: {e or 'no answer'})") from None
    for path, key in (("/version", "version"), ("/metrics", "metrics")):
        try:
            r = httpx.get(f"{url}{path}", timeout=timeout)
            info[key] = (r.json().get("version") if key == "version" else cache_info(parse_prometheus(r.text))) \
                if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            info[key] = None
    info["cache_config"] = info.pop("metrics")
    return info


def resolve_model(cfg: ServingConfig, info: dict) -> str:
    ids = [m.get("id") for m in info.get("models", [])]
    if cfg.model_name:
        if ids and cfg.model_name not in ids:
            raise ValueError(f"MODEL_NAME={cfg.model_name!r} is not served at {cfg.vllm_url} (served: {ids})")
        return cfg.model_name
    if not ids:
        raise ValueError(f"server at {cfg.vllm_url} lists no models; set MODEL_NAME")
    return ids[0]


def make_builder(cfg: ServingConfig, info: dict | None = None) -> tuple[PromptBuilder, str]:
    """Prompt builder from TOKENIZER, else the served model's local folder, else the shared
    Qwen3 tokenizer; ``TOKENIZER=none``: token-id prompts (ids 100..999 unless the model's
    config.json gives the vocabulary)."""
    if cfg.tokenizer.lower() == "none":
        vocab = 1000
        for m in (info or {}).get("models", []):
            p = Path(str(m.get("root", ""))) / "config.json"
            if p.is_file():
                vocab = int(json.loads(p.read_text()).get("vocab_size", vocab))
        return PromptBuilder(None, vocab_size=vocab), "none (token ids)"
    cands = [cfg.tokenizer] if cfg.tokenizer else []
    if not cands:
        roots = [str(m.get("root", "")) for m in (info or {}).get("models", [])] + [cfg.model_name]
        cands = [r for r in roots if r and any((Path(r) / f).exists() for f in ("tokenizer_config.json", "tokenizer.json"))]
        cands.append(str(default_tokenizer_path()))
    return PromptBuilder(load_tokenizer(cands[0])), cands[0]


def new_run_dir(cfg: ServingConfig) -> Path:
    base = Path(cfg.output_dir)
    stem = time.strftime("%Y%m%d-%H%M%S") + (f"-{cfg.run_tag}" if cfg.run_tag else "")
    d, i = base / stem, 1
    while d.exists():
        d, i = base / f"{stem}-{i}", i + 1
    d.mkdir(parents=True)
    return d


def versions() -> dict:
    from importlib import metadata
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("pdlib", "httpx", "nvidia-ml-py", "transformers", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if out["pdlib"] is None:
        from .. import __version__
        out["pdlib"] = __version__
    return out


def run_profile(cfg: ServingConfig, *, run_dir=None, workload_path=None, progress: bool = False) -> dict:
    """Run the grid (or the given workload) against cfg.vllm_url; returns an outcome dict with
    ``run_dir``, ``n_requests``, ``n_ok``, ``failures`` and a one-line ``message``."""
    info = probe_server(cfg.vllm_url)
    model = resolve_model(cfg, info)
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    wl = run_dir / "workload.jsonl"
    tokenizer_used = None
    if workload_path:
        records = read_workload(workload_path)
        if Path(workload_path).resolve() != wl.resolve():
            write_workload(records, wl)
    elif wl.exists():
        records = read_workload(wl)  # resuming
    else:
        builder, tokenizer_used = make_builder(cfg, info)
        records = build_workload(cfg, builder)
        write_workload(records, wl)
    skip = done_request_ids(run_dir / "request_trace.csv")
    manifest = {"run_id": run_dir.name, "status": "running", "started_at": time.time(), "config": cfg.to_dict(),
                "model": model, "server": info, "versions": versions(), "nvml": nvml_probe(cfg.gpu_indices),
                "tokenizer": tokenizer_used, "n_requests": len(records), "resumed_ok_requests": len(skip),
                "files": list(FILES)}
    atomic_write_json(run_dir / "manifest.json", manifest)

    def on_condition(cond, what, n):
        if progress:
            print(f"[serve-profile] {cond}: {what} ({n} requests)", file=sys.stderr, flush=True)

    async def go():
        gpu = GpuSampler(cfg.gpu_indices, run_dir / "gpu_mem_trace.csv", cfg.gpu_interval_ms).start()
        kv = MetricsSampler(cfg.vllm_url, run_dir / "kv_trace.csv", cfg.metrics_interval_ms).start()
        try:
            await run_requests_async(records, cfg.vllm_url, model, run_dir / "request_trace.csv",
                                     timeout=cfg.request_timeout, skip_ids=skip, on_condition=on_condition)
        finally:
            kv.stop()
            gpu.stop()

    try:
        asyncio.run(go())
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
    summary = summarize(run_dir)
    atomic_write_json(run_dir / "summary.json", summary)
    tot = summary["overall"]
    failures = {k: v for k, v in tot["failures"].items() if v}
    msg = f"{tot['n_ok']} of {tot['n']} requests ok"
    if failures:
        msg += "; failures: " + ", ".join(f"{k} {v}" for k, v in failures.items())
        if failures.keys() & {"refused", "disconnected"}:
            msg += f" (the server at {cfg.vllm_url} stopped answering during the run)"
    msg += f"; results in {run_dir}"
    manifest.update(status=status if not failures else f"{status} with failures", finished_at=time.time(),
                    message=msg)
    atomic_write_json(run_dir / "manifest.json", manifest)
    if status == "interrupted":
        raise KeyboardInterrupt
    return {"run_dir": str(run_dir), "n_requests": tot["n"], "n_ok": tot["n_ok"], "failures": failures,
            "message": msg}


def _read_csv(path):
    import pandas as pd
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def _peak(df, col, t0, t1, time_col="time_s"):
    import pandas as pd
    if df.empty or col not in df:
        return None
    v = pd.to_numeric(df.loc[(df[time_col] >= t0) & (df[time_col] <= t1), col], errors="coerce").dropna()
    return float(v.max()) if len(v) else None


def _stats(req, kv, gpu, t0, t1) -> dict:
    ok = req[req["outcome"] == "ok"]
    counts = req["outcome"].value_counts().to_dict()
    out = {"n": len(req), "n_ok": len(ok),
           "failures": {k: int(counts.get(k, 0)) for k in FAILURE_KINDS},
           "t_start": float(t0), "t_end": float(t1), "duration_s": float(t1 - t0),
           "tokens_in": int(ok["tokens_in"].fillna(0).sum()), "tokens_out": int(ok["tokens_out"].fillna(0).sum()),
           "ttft_s": percentiles(ok["ttft_s"]), "tpot_s": percentiles(ok["tpot_s"]),
           "latency_s": percentiles(ok["latency_s"]),
           "peak_kv_cache_usage": _peak(kv, "kv_cache_usage_perc", t0, t1),
           "peak_num_requests_running": _peak(kv, "num_requests_running", t0, t1),
           "peak_num_requests_waiting": _peak(kv, "num_requests_waiting", t0, t1)}
    out["output_tok_per_s"] = out["tokens_out"] / out["duration_s"] if out["duration_s"] > 0 else None
    peaks = {}
    if not gpu.empty and "mem_used_bytes" in gpu:
        for idx, g in gpu.dropna(subset=["gpu_index"]).groupby("gpu_index"):
            peaks[str(int(idx))] = _peak(g, "mem_used_bytes", t0, t1)
    out["peak_gpu_mem_used_bytes"] = peaks or None
    return out


def summarize(run_dir) -> dict:
    """summary.json content from the run folder's CSVs (works on partial runs)."""
    run_dir = Path(run_dir)
    req = _read_csv(run_dir / "request_trace.csv")
    kv, gpu = _read_csv(run_dir / "kv_trace.csv"), _read_csv(run_dir / "gpu_mem_trace.csv")
    notes = []
    if not gpu.empty and "note" in gpu and gpu["mem_used_bytes"].isna().all():
        notes += sorted(set(gpu["note"].dropna().astype(str)))
    if not kv.empty and "error" in kv:
        n_err = int(kv["error"].notna().sum())
        if n_err:
            notes.append(f"{n_err} of {len(kv)} /metrics scrapes failed")
    out = {"run_id": run_dir.name, "notes": notes, "conditions": {}}
    if req.empty:
        out["overall"] = {"n": 0, "n_ok": 0, "failures": {k: 0 for k in FAILURE_KINDS}}
        return out
    req = req.drop_duplicates("request_id", keep="last")  # a resumed run's retries replace the failures
    for cond, g in req.groupby("condition", sort=False):
        first = g.iloc[0]
        s = _stats(g, kv, gpu, g["t_start"].min(), g["t_end"].max())
        out["conditions"][cond] = {"input_len": int(first["input_len"]), "output_len": int(first["output_len"]),
                                   "concurrency": int(first["concurrency"]), "prefix_mode": first["prefix_mode"], **s}
    out["overall"] = _stats(req, kv, gpu, req["t_start"].min(), req["t_end"].max())
    return out


def ensure_run(run_dir: str = "", vllm_url: str = "", launch_tiny: bool = False, **settings) -> Path:
    """The notebook's entry: an existing run folder; else run the grid in ``settings`` (config
    fields, e.g. ``input_lens=(64, 256)``) against ``vllm_url``; else, with ``launch_tiny``,
    start a local vLLM serving a tiny random-weight Qwen3 (Qwen3 tokenizer), run, stop it."""
    if run_dir:
        if not (Path(run_dir) / "request_trace.csv").is_file():
            raise FileNotFoundError(f"{run_dir}: no request_trace.csv (not a serve-profile run folder)")
        return Path(run_dir)
    from .config import from_env
    if vllm_url:
        return Path(run_profile(from_env(vllm_url=vllm_url, **settings), progress=True)["run_dir"])
    if not launch_tiny:
        raise ValueError("give run_dir, or vllm_url, or launch_tiny=True")
    import tempfile

    from .server import VLLMServer, build_tiny_model
    with tempfile.TemporaryDirectory(prefix="pdlib-tiny-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny-qwen3", tokenizer_dir=default_tokenizer_path())
        with VLLMServer(model, served_model_name="tiny-qwen3", kv_cache_memory_bytes=2 * 2**20,
                        max_model_len=1024) as srv:
            cfg = from_env(vllm_url=srv.url, model_name="tiny-qwen3", tokenizer=str(model), **settings)
            return Path(run_profile(cfg, progress=True)["run_dir"])
