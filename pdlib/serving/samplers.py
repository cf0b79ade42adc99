"""Samplers: GPU memory through NVML (``gpu_mem_trace.csv``) and the server's Prometheus
``/metrics`` (``kv_trace.csv``: KV-cache usage, running/waiting requests and counters).

Both run until stopped and write (flushing) one row per sample. Without NVML (no GPU, no
driver) the GPU sampler writes one row whose ``note`` says why and stops; the scrape goes on.
A failed scrape (server down) is a row with ``error`` set, and the sampler keeps going.
"""
from __future__ import annotations

import re
import threading
import time

from .requests import TraceWriter

GPU_FIELDS = ("time_s", "gpu_index", "name", "mem_used_bytes", "mem_total_bytes", "gpu_util_pct", "note")

# Column -> vLLM metric names (first found wins; older vLLM exported gpu_cache_usage_perc).
# Checked against vllm 0.32.0's /metrics; values are summed over engines.
KV_METRICS = {
    "kv_cache_usage_perc": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "num_requests_running": ("vllm:num_requests_running",),
    "num_requests_waiting": ("vllm:num_requests_waiting",),
    "num_preemptions_total": ("vllm:num_preemptions_total",),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "generation_tokens_total": ("vllm:generation_tokens_total",),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "request_success_total": ("vllm:request_success_total",),
}
KV_FIELDS = ("time_s", *KV_METRICS, "error")

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict, float]]]:
    """Prometheus text exposition -> {metric: [(labels, value), ...]}."""
    out: dict[str, list] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def kv_row(metrics: dict) -> dict:
    row = {}
    for col, names in KV_METRICS.items():
        for name in names:
            if name in metrics:
                row[col] = sum(v for _, v in metrics[name])
                break
        else:
            row[col] = ""
    return row


def cache_info(metrics: dict) -> dict:
    """Labels of ``vllm:cache_config_info`` (block size, KV blocks/tokens) if exported."""
    rows = metrics.get("vllm:cache_config_info") or []
    return dict(rows[0][0]) if rows else {}


class MetricsSampler:
    """Scrapes ``{url}/metrics`` every interval in a background thread (``start``/``stop``);
    a thread, not the request runner's event loop, so parsing never delays streamed tokens."""

    def __init__(self, url: str, path, interval_ms: int = 250, timeout: float = 5.0):
        self.url, self.interval, self.timeout = url.rstrip("/"), interval_ms / 1000.0, timeout
        self.writer = TraceWriter(path, KV_FIELDS)
        self.n_rows = self.n_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scrape_once(self, client) -> dict:
        row = {"time_s": time.time(), "error": ""}
        try:
            r = client.get(f"{self.url}/metrics", timeout=self.timeout)
            r.raise_for_status()
            row.update(kv_row(parse_prometheus(r.text)))
        except Exception as e:  # noqa: BLE001 - a failed scrape is a row
            row.update({c: "" for c in KV_METRICS})
            row["error"] = f"{type(e).__name__}: {e}"[:200]
            self.n_errors += 1
        self.writer.write(row)
        self.n_rows += 1
        return row

    def _loop(self) -> None:
        import httpx
        try:
            with httpx.Client() as client:
                while True:
                    t0 = time.monotonic()
                    self.scrape_once(client)
                    if self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0))):
                        break
                self.scrape_once(client)  # one sample after the last request
        finally:
            self.writer.close()

    def start(self) -> MetricsSampler:
        self._thread = threading.Thread(target=self._loop, name="pdlib-metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.timeout + 5)


def nvml_probe(indices) -> dict:
    """{'available': bool, 'reason'|'gpus': ...} without keeping NVML open."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001
        return {"available": False, "reason": f"NVML unavailable: {type(e).__name__}: {e}"}
    try:
        gpus = []
        for i in indices:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "mem_total_bytes": int(mem.total)})
        return {"available": True, "driver": _s(pynvml.nvmlSystemGetDriverVersion()), "gpus": gpus}
    except Exception as e:  # noqa: BLE001
        return {"available": False, "reason": f"NVML error: {type(e).__name__}: {e}"}
    finally:
        pynvml.nvmlShutdown()


def _s(x):
    return x.decode() if isinstance(x, bytes) else x


class GpuSampler:
    """NVML memory sampler in a background thread (``start``/``stop``)."""

    def __init__(self, indices, path, interval_ms: int = 100):
        self.indices, self.interval = tuple(indices), interval_ms / 1000.0
        self.writer = TraceWriter(path, GPU_FIELDS)
        self.available, self.reason, self.n_rows = False, "", 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuSampler:
        try:
            import pynvml
            pynvml.nvmlInit()
            self._handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in self.indices]
            self._names = {i: _s(pynvml.nvmlDeviceGetName(h)) for i, h in self._handles}
            self.available = True
        except Exception as e:  # noqa: BLE001 - no GPU: note it and carry on
            self.reason = f"NVML unavailable: {type(e).__name__}: {e}"[:300]
            self.writer.write({"time_s": time.time(), "note": self.reason})
            self.writer.close()
            return self
        self._thread = threading.Thread(target=self._loop, name="pdlib-gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        import pynvml
        try:
            while True:
                t0 = time.monotonic()
                for i, h in self._handles:
                    row = {"time_s": time.time(), "gpu_index": i, "name": self._names[i], "note": ""}
                    try:
                        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                        row.update(mem_used_bytes=int(mem.used), mem_total_bytes=int(mem.total),
                                   gpu_util_pct=pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                    except Exception as e:  # noqa: BLE001
                        row["note"] = f"{type(e).__name__}: {e}"[:200]
                    self.writer.write(row)
                    self.n_rows += 1
                if self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0))):
                    break
        finally:
            self.writer.close()
            pynvml.nvmlShutdown()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def sample_for(duration_s: float, *, url: str | None, gpu_path=None, kv_path=None,
                     gpu_indices=(0,), gpu_interval_ms=100, metrics_interval_ms=250) -> dict:
    """Run the samplers alone for ``duration_s`` seconds (``pdlib serve-profile sample``)."""
    gpu = GpuSampler(gpu_indices, gpu_path, gpu_interval_ms).start() if gpu_path else None
    kv = MetricsSampler(url, kv_path, metrics_interval_ms).start() if (kv_path and url) else None
    try:
        time.sleep(duration_s)
    finally:
        for sampler in (kv, gpu):
            if sampler:
                sampler.stop()
    return {"gpu_rows": gpu.n_rows if gpu else 0, "nvml": (gpu.available if gpu else None),
            "nvml_note": gpu.reason if gpu else "", "kv_rows": kv.n_rows if kv else 0,
            "kv_errors": kv.n_errors if kv else 0}
