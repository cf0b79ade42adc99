"""One profiling run -> ``<OUTPUT_DIR>/<run_id>/``: workload.jsonl, request_trace.csv,
gpu_mem_trace.csv, kv_trace.csv, summary.json, manifest.json.

The samplers run for the whole run (the /metrics scraper in its own process); the request
runner walks the conditions one after another, on an event loop of its own even when called
from a running one (Jupyter). Files are written as the run goes (CSV rows flushed one by one, JSON atomically), so
an interrupted run keeps its rows and ``run_profile(..., run_dir=existing)`` resumes it
(requests already ``ok`` are not sent again).
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from ..records import atomic_write_json
from .config import ServingConfig
from .requests import FAILURE_KINDS, done_request_ids, run_requests_async, run_sync
from .samplers import GpuSampler, MetricsSampler, cache_info, nvml_probe, parse_prometheus
from .summary import summarize
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


class ServerProblem(RuntimeError):
    """The server cannot be profiled (checked before a run folder exists; message is one line)."""


class ServerUnreachable(ServerProblem):
    """The server did not answer."""


class BadServerAnswer(ServerProblem):
    """The server answered, but not as an OpenAI-compatible server does."""


def _json_or_none(r):
    try:
        return r.json()
    except ValueError:
        return None


def probe_server(url: str, timeout: float = 10.0) -> dict:
    """Server info from /v1/models, /version and /metrics; raises ServerUnreachable when
    /v1/models does not answer 200. A malformed /v1/models payload leaves ``models`` empty and
    says why in ``models_error`` (``resolve_model`` decides whether that matters)."""
    import httpx
    info: dict = {"url": url, "models": [], "models_error": None}
    try:
        r = httpx.get(f"{url}/v1/models", timeout=timeout)
        r.raise_for_status()
    except httpx.HTTPStatusError as e:
        raise ServerUnreachable(f"server at {url} answered /v1/models with HTTP {e.response.status_code}") from None
    except httpx.HTTPError as e:
        raise ServerUnreachable(f"cannot reach server at {url} ({type(e).__name__}: {e or 'no answer'})") from None
    payload = _json_or_none(r)
    models = payload.get("data") if isinstance(payload, dict) else None
    if isinstance(models, list) and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
        info["models"] = models
    else:
        info["models_error"] = (f"/v1/models answered {r.text[:80]!r}, not "
                                '{"data": [{"id": "<model>", ...}, ...]}')
    for path, key in (("/version", "version"), ("/metrics", "metrics")):
        try:
            r = httpx.get(f"{url}{path}", timeout=timeout)
        except httpx.HTTPError:
            info[key] = None
            continue
        if r.status_code != 200:
            info[key] = None
        elif key == "version":
            v = _json_or_none(r)
            info[key] = str(v["version"]) if isinstance(v, dict) and "version" in v else None
        else:
            info[key] = cache_info(parse_prometheus(r.text))
    info["cache_config"] = info.pop("metrics")
    return info


def resolve_model(cfg: ServingConfig, info: dict) -> str:
    ids = [m["id"] for m in info.get("models", [])]
    if cfg.model_name:
        if ids and cfg.model_name not in ids:
            raise ValueError(f"MODEL_NAME={cfg.model_name!r} is not served at {cfg.vllm_url} (served: {ids})")
        return cfg.model_name
    if info.get("models_error"):
        raise BadServerAnswer(f"server at {cfg.vllm_url}: {info['models_error']}; set MODEL_NAME (--model)")
    if not ids:
        raise ValueError(f"server at {cfg.vllm_url} lists no models; set MODEL_NAME")
    return ids[0]


def server_answers(url: str, timeout: float = 5.0) -> bool:
    """Whether the server answers ``/v1/models`` at all (any HTTP status) right now."""
    import httpx
    try:
        httpx.get(f"{url}/v1/models", timeout=timeout)
        return True
    except httpx.HTTPError:
        return False


def make_builder(cfg: ServingConfig, info: dict | None = None) -> tuple[PromptBuilder, str]:
    """Prompt builder from TOKENIZER, else the served model's local folder, else the shared
    Qwen3 tokenizer; ``TOKENIZER=none``: token-id prompts (ids 100..999 unless the model's
    config.json gives the vocabulary)."""
    if cfg.tokenizer.lower() == "none":
        vocab = 1000
        for m in (info or {}).get("models", []):
            p = Path(str(m.get("root", ""))) / "config.json"
            try:
                vocab = int(json.loads(p.read_text()).get("vocab_size", vocab)) if p.is_file() else vocab
            except (OSError, ValueError, TypeError, AttributeError):
                pass
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
    ``run_dir``, ``status``, ``n_requests``, ``n_ok``, ``failures`` and a one-line ``message``.

    Before a run folder exists, a server that cannot be profiled raises ``ServerProblem`` and
    a bad setting or workload ``ValueError``. Once it exists, every request of the workload ends
    as one row and summary.json and manifest.json are written whatever happens (Ctrl-C: status
    ``interrupted``, then KeyboardInterrupt is raised again; any other exception: ``failed``)."""
    info = probe_server(cfg.vllm_url)
    model = resolve_model(cfg, info)
    resumed_wl = Path(run_dir) / "workload.jsonl" if run_dir else None
    tokenizer_used = None
    if workload_path:
        records = read_workload(workload_path)
    elif resumed_wl is not None and resumed_wl.exists():
        records = read_workload(resumed_wl)  # resuming
    else:
        builder, tokenizer_used = make_builder(cfg, info)
        records = build_workload(cfg, builder)
    run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    wl = run_dir / "workload.jsonl"
    if not wl.exists() or (workload_path and Path(workload_path).resolve() != wl.resolve()):
        write_workload(records, wl)
    skip = done_request_ids(run_dir / "request_trace.csv")
    notes = [f"{info['models_error']}; used MODEL_NAME={model!r}"] if info.get("models_error") else []
    manifest = {"run_id": run_dir.name, "status": "running", "started_at": time.time(), "config": cfg.to_dict(),
                "model": model, "server": info, "versions": versions(), "nvml": nvml_probe(cfg.gpu_indices),
                "tokenizer": tokenizer_used, "n_requests": len(records), "resumed_ok_requests": len(skip),
                "notes": notes, "files": list(FILES)}
    atomic_write_json(run_dir / "manifest.json", manifest)

    def on_condition(cond, what, n):
        if progress:
            print(f"[serve-profile] {cond}: {what} ({n} requests)", file=sys.stderr, flush=True)

    gpu = kv = None
    stopped_by: BaseException | None = None
    try:
        gpu = GpuSampler(cfg.gpu_indices, run_dir / "gpu_mem_trace.csv", cfg.gpu_interval_ms).start()
        kv = MetricsSampler(cfg.vllm_url, run_dir / "kv_trace.csv", cfg.metrics_interval_ms).start()
        run_sync(lambda: run_requests_async(records, cfg.vllm_url, model, run_dir / "request_trace.csv",
                                            timeout=cfg.request_timeout, skip_ids=skip, on_condition=on_condition))
    except BaseException as e:  # noqa: BLE001 - recorded in the manifest, raised again below
        stopped_by = e
    finally:
        for sampler in (kv, gpu):
            if sampler is not None:
                sampler.stop()
    out = _finish(run_dir, cfg, manifest, stopped_by, kv)
    if stopped_by is not None:
        raise stopped_by
    return out


def _finish(run_dir: Path, cfg: ServingConfig, manifest: dict, stopped_by, kv) -> dict:
    """Write summary.json, then the manifest with the run's status and its one-line message."""
    sampler = {"interval_ms": cfg.metrics_interval_ms, "error": kv.error if kv else "not started",
               "rows": kv.n_rows if kv else 0, "failed_scrapes": kv.n_errors if kv else 0,
               "skipped_ticks": kv.n_skipped if kv else 0, "max_tick_late_s": kv.max_tick_late_s if kv else None}
    try:
        summary = summarize(run_dir, sampler=sampler)
    except Exception as e:  # noqa: BLE001 - the manifest must still be written
        summary = {"run_id": run_dir.name, "error": f"summary failed: {type(e).__name__}: {e}", "conditions": {},
                   "overall": {"n": 0, "n_ok": 0, "failures": {k: 0 for k in FAILURE_KINDS}}}
    atomic_write_json(run_dir / "summary.json", summary)
    tot = summary["overall"]
    failures = {k: v for k, v in tot["failures"].items() if v}
    msg = f"{tot['n_ok']} of {tot['n']} requests ok"
    if failures:
        msg += "; failures: " + ", ".join(f"{k} {v}" for k, v in failures.items()) + server_note(cfg.vllm_url, failures)
    if isinstance(stopped_by, KeyboardInterrupt):
        status, msg = "interrupted", "interrupted: " + msg
    elif stopped_by is not None:
        status = "failed"
        msg = f"failed ({type(stopped_by).__name__}: {stopped_by}): " + msg
    else:
        status = "complete with failures" if failures else "complete"
    msg += f"; results in {run_dir}"
    manifest.update(status=status, finished_at=time.time(), message=msg, kv_sampler=sampler,
                    error=None if stopped_by is None else f"{type(stopped_by).__name__}: {stopped_by}"[:500])
    atomic_write_json(run_dir / "manifest.json", manifest)
    return {"run_dir": str(run_dir), "status": status, "n_requests": tot["n"], "n_ok": tot["n_ok"],
            "failures": failures, "message": msg}


def server_note(url: str, failures: dict) -> str:
    """What the connection failures say about the server, checked by asking it once more:
    "stopped answering" only when it no longer answers at all."""
    lost = {k: failures.get(k, 0) for k in ("refused", "disconnected", "timeout", "incomplete")}
    if not any(lost.values()):
        return ""
    if not server_answers(url):
        return f" (the server at {url} stopped answering during the run: no answer to /v1/models after it)"
    said = [f"{n} {what}" for n, what in ((lost["refused"], "connections refused"),
                                          (lost["disconnected"], "responses cut off mid-stream")) if n]
    return f" (the server at {url} still answers; {', '.join(said)})" if said else ""


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
