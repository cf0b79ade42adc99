"""Fault injection for the serving profiler: a real OpenAI-compatible HTTP server on 127.0.0.1
(asyncio streams, HTTP/1.1 written by hand so every byte can be wrong) serves
``/v1/completions`` streams, ``/v1/models``, ``/version`` and ``/metrics`` with faults:
usage without its fields, lines that are not SSE, data that is not JSON, error events,
connection resets and closes mid-stream, streams without ``[DONE]``, 429/500/503, slow answers
(timeouts), a server that dies mid-run, malformed ``/v1/models``, broken ``/metrics``, and
Ctrl-C mid-run (in plain code and inside a running event loop, as in Jupyter).

Each run goes through ``run_profile`` and is checked: one row per request of the workload, each
with a known outcome (the one the injected fault implies), summary.json and manifest.json
written, no traceback, "stopped answering" only when the server did. Every server serves a
bounded number of requests and stops by itself after a deadline. ``FUZZ_TABLE`` collects per
fault class: runs, requests, rows, tracebacks, lost rows (printed at the end, ``-s``).
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import socket
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pdlib.serving.config import ServingConfig
from pdlib.serving.orchestrator import BadServerAnswer, run_profile
from pdlib.serving.requests import OUTCOMES
from pdlib.serving.workload import PromptBuilder, build_workload, write_workload

TIMEOUT = 1.5              # REQUEST_TIMEOUT of every run (s): far above a healthy answer's time here
SLOW_S = TIMEOUT + 2.5     # how long "slow" faults keep the client waiting
SERVER_LIFETIME = 120.0    # a fault server closes itself after this long ...
SERVER_MAX_REQUESTS = 5000 # ... or after this many HTTP requests (scrapes included)

# fault -> the outcome the profiler must record for it
EXPECTED = {
    "ok": "ok", "usage_no_completion_tokens": "malformed", "usage_no_prompt_tokens": "malformed",
    "usage_not_object": "malformed", "usage_negative": "malformed", "no_usage": "malformed",
    "sse_garbage_line": "malformed", "json_invalid": "malformed", "json_not_object": "malformed",
    "error_event": "error", "reset_mid_stream": "disconnected", "close_mid_stream": "disconnected",
    "reset_before_headers": "disconnected", "no_done": "incomplete", "http_429": "http_4xx",
    "http_500": "http_5xx", "http_503": "http_5xx", "slow_headers": "timeout", "stall_mid_stream": "timeout",
}
assert set(EXPECTED.values()) <= set(OUTCOMES)

# fault class -> (faults its requests draw from, runs, server-level faults)
CLASSES = {
    "usage_fields": (["ok", "usage_no_completion_tokens", "usage_no_prompt_tokens", "usage_not_object",
                      "usage_negative", "no_usage"], 10, {}),
    "malformed_sse": (["ok", "sse_garbage_line", "json_invalid", "json_not_object", "error_event"], 10, {}),
    "resets": (["ok", "reset_mid_stream", "close_mid_stream", "reset_before_headers", "no_done"], 10, {}),
    "http_errors": (["ok", "http_429", "http_500", "http_503"], 10, {}),
    "timeouts": (["ok", "slow_headers", "stall_mid_stream"], 8, {}),
    "server_dies": (["ok"], 8, {"die_after": True}),
    "models_malformed": (["ok"], 10, {"models": True}),
    "metrics_broken": (["ok"], 8, {"metrics": True}),
    "mixed": (list(EXPECTED), 20, {}),
}
FUZZ_TABLE: dict[str, dict] = {}


def _key(prompt) -> int:
    return zlib.crc32(json.dumps(prompt).encode())


class FaultServer:
    """OpenAI-compatible server on 127.0.0.1 that answers each completion with the fault
    ``faults[key(prompt)]``; ``die_after=n`` stops listening and drops every connection when
    the n-th completion arrives; ``models``/``metrics``: malformed answers there (variant by
    ``seed``); ``on_completion(i)`` is called with the index of each completion request."""

    def __init__(self, faults: dict[int, str], *, seed: int = 0, die_after: int | None = None,
                 models: bool = False, metrics: bool = False, on_completion=None):
        self.faults, self.seed, self.die_after = faults, seed, die_after
        self.models_bad, self.metrics_bad, self.on_completion = models, metrics, on_completion
        self.n_completions = self.n_requests = self.in_flight = 0
        self.dead = False
        self._writers: set = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self):
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self):
        self._stop = asyncio.Event()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), SERVER_LIFETIME)   # stops by itself
        await self._die()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _die(self):
        if self.dead:
            return
        self.dead = True
        self.server.close()
        for w in list(self._writers):
            _reset(w)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5)

    # ----------------------------------------------------------------- HTTP
    async def _handle(self, reader, writer):
        self._writers.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
            self.n_requests += 1
            if self.n_requests > SERVER_MAX_REQUESTS or self.dead:
                _reset(writer)
                return
            if method == "GET":
                await self._get(path, writer)
            elif method == "POST" and path == "/v1/completions":
                self.in_flight += 1
                try:
                    await self._completion(json.loads(body), writer)
                finally:
                    self.in_flight -= 1
            else:
                await _respond(writer, 404, b"{}")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError, asyncio.CancelledError):
            pass   # client gone, or this server shutting down (its pending handlers are cancelled)
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _get(self, path, writer):
        v = self.seed % 4
        if path == "/v1/models":
            if self.models_bad:
                body = [b'{"data": "tiny"}', b"[1, 2, 3]", b"<html>not json", b'{"data": [{"name": "x"}]}'][v]
            else:
                body = json.dumps({"object": "list", "data": [{"id": "fuzz", "object": "model"}]}).encode()
            await _respond(writer, 200, body)
        elif path == "/version":
            await _respond(writer, 200, b'["not", "a", "dict"]' if self.models_bad else b'{"version": "fuzz-0"}')
        elif path == "/metrics":
            if self.metrics_bad:
                if v == 0:
                    await _respond(writer, 500, b"oops")
                elif v == 1:
                    await _respond(writer, 200, b"garbage {{{ \n vllm:kv_cache_usage_perc not-a-number\n")
                elif v == 2:
                    _reset(writer)
                else:
                    await asyncio.sleep(30)       # never answers in time (scrape timeout)
                return
            usage = min(1.0, self.in_flight / 10)
            text = (f'vllm:kv_cache_usage_perc{{engine="0",model_name="fuzz"}} {usage}\n'
                    f'vllm:num_requests_running{{engine="0"}} {self.in_flight}\n'
                    'vllm:num_requests_waiting{engine="0"} 0\n'
                    f'vllm:prompt_tokens_total{{engine="0"}} {self.n_completions}\n')
            await _respond(writer, 200, text.encode(), "text/plain; version=0.0.4")
        else:
            await _respond(writer, 200, b"{}")

    async def _completion(self, req, writer):
        self.n_completions += 1
        if self.on_completion is not None:
            self.on_completion(self.n_completions)
        if self.die_after is not None and self.n_completions >= self.die_after:
            await self._die()
            return
        fault = self.faults.get(_key(req["prompt"]), "ok")
        n, n_in = int(req["max_tokens"]), len(req["prompt"])
        if fault in ("http_429", "http_500", "http_503"):
            code = int(fault[-3:])
            await _respond(writer, code, json.dumps({"error": {"message": f"injected {code}"}}).encode())
            return
        if fault == "reset_before_headers":
            _reset(writer)
            return
        if fault == "slow_headers":
            await asyncio.sleep(SLOW_S)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")

        async def send(text: str):
            data = text.encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.002)

        for i in range(n):
            if i == n // 2:
                if fault == "reset_mid_stream":
                    _reset(writer)
                    return
                if fault == "close_mid_stream":
                    writer.close()
                    return
                if fault == "stall_mid_stream":
                    await asyncio.sleep(SLOW_S)
                if fault == "sse_garbage_line":
                    await send("this line is not server-sent events\n\n")
                if fault == "json_invalid":
                    await send('data: {"choices": [{"text": "x"\n\n')
                if fault == "json_not_object":
                    await send("data: [1, 2, 3]\n\n")
                if fault == "error_event":
                    await send('data: {"error": {"message": "injected engine error", "code": 500}}\n\n')
            chunk = {"id": "cmpl-fuzz", "object": "text_completion",
                     "choices": [{"index": 0, "text": " tok", "finish_reason": None}], "usage": None}
            await send(f"data: {json.dumps(chunk)}\n\n")
        usage = {"prompt_tokens": n_in, "completion_tokens": n, "total_tokens": n_in + n}
        usage = {"usage_no_completion_tokens": {"prompt_tokens": n_in},
                 "usage_no_prompt_tokens": {"completion_tokens": n},
                 "usage_not_object": "lots", "usage_negative": {"prompt_tokens": n_in, "completion_tokens": -1},
                 }.get(fault, usage)
        if fault != "no_usage":
            await send(f"data: {json.dumps({'id': 'cmpl-fuzz', 'choices': [], 'usage': usage})}\n\n")
        if fault != "no_done":
            await send("data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _respond(writer, code, body: bytes, ctype="application/json"):
    writer.write(f"HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body)
    await writer.drain()


def _reset(writer):
    """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --------------------------------------------------------------------------- one run
def _rows(path):
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _workload(tmp, seed, n_per_condition=3):
    cfg = ServingConfig(input_lens=(8,), output_lens=(6, 12), concurrencies=(1, 3), prefix_modes=("low",),
                        n_per_condition=n_per_condition, seed=seed)
    recs = build_workload(cfg, PromptBuilder(None, vocab_size=1000))
    return recs, write_workload(recs, Path(tmp) / "workload.jsonl")


def _assign(recs, kinds, seed):
    """fault per request: every kind of the class at least once (when there is room), then random."""
    import numpy as np
    rng = np.random.default_rng(seed)
    order = list(kinds) + list(rng.choice(kinds, size=max(0, len(recs) - len(kinds))))
    rng.shuffle(order)
    return {r["request_id"]: order[i % len(order)] for i, r in enumerate(recs)}


def _check_run(run_dir: Path, recs, expect: dict | None, stats: dict, text: str):
    """Rows == requests, each with a known outcome (the expected one where given), files written."""
    rows = _rows(run_dir / "request_trace.csv")
    by_id = {r["request_id"]: r for r in rows}
    stats["requests"] += len(recs)
    stats["rows"] += len(rows)
    stats["lost"] += len({r["request_id"] for r in recs} - set(by_id)) + (len(rows) - len(by_id))
    stats["tracebacks"] += text.count("Traceback") + text.count("never retrieved")
    assert len(rows) == len(by_id) == len(recs), (len(rows), len(recs))
    for r in rows:
        assert r["outcome"] in OUTCOMES, r
        assert r["outcome"] == "ok" or r["error"], r
        stats["outcomes"][r["outcome"]] = stats["outcomes"].get(r["outcome"], 0) + 1
        if expect is not None:
            assert r["outcome"] == EXPECTED[expect[r["request_id"]]], (expect[r["request_id"]], r)
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert summary["overall"]["n"] == len(recs)
    assert summary["overall"]["n_ok"] + sum(summary["overall"]["failures"].values()) == len(recs)
    assert manifest["status"] != "running" and manifest["message"]
    for cond, s in summary["conditions"].items():
        if s["kv_samples"] == 0:
            assert s["peak_kv_cache_usage"] is None and s["kv_note"], (cond, s)
        else:
            assert s["peak_kv_cache_usage"] is not None and s["kv_note"] is None
    return rows, summary, manifest


def _new_stats():
    return {"runs": 0, "requests": 0, "rows": 0, "tracebacks": 0, "lost": 0, "outcomes": {}}


def _one_run(klass: str, i: int, base: Path, capture) -> dict:
    kinds, _, server_faults = CLASSES[klass]
    stats = _new_stats()
    seed = 1000 * list(CLASSES).index(klass) + i
    tmp = base / f"{klass}-{i}"
    recs, wl = _workload(tmp, seed)
    expect = _assign(recs, kinds, seed)
    faults = {_key(r["prompt"]): expect[r["request_id"]] for r in recs}
    die_after = 1 + i % len(recs) if server_faults.get("die_after") else None
    model_name = "fuzz" if not (server_faults.get("models") and i % 2) else ""
    cfg = ServingConfig(output_dir=str(tmp / "out"), request_timeout=TIMEOUT, metrics_interval_ms=50,
                        tokenizer="none", model_name=model_name, run_tag=f"{klass}{i}")
    with FaultServer(faults, seed=i, die_after=die_after, models=server_faults.get("models", False),
                     metrics=server_faults.get("metrics", False)) as srv:
        cfg = cfg.replace(vllm_url=srv.url)
        stats["runs"] += 1
        if not model_name:        # malformed /v1/models and no MODEL_NAME: refused before any run folder
            with pytest.raises(BadServerAnswer, match="/v1/models answered"):
                run_profile(cfg, workload_path=wl)
            assert not (tmp / "out").exists()
            return stats
        out = run_profile(cfg, workload_path=wl)
    text = capture()
    rows, summary, manifest = _check_run(Path(out["run_dir"]), recs, None if die_after else expect, stats, text)
    died = die_after is not None
    assert ("stopped answering" in out["message"]) == died, out["message"]
    if died:
        outcomes = [r["outcome"] for r in rows]
        assert set(outcomes) <= {"ok", "disconnected", "refused"} and outcomes.count("ok") <= die_after - 1
    if server_faults.get("models"):
        assert any("/v1/models answered" in n for n in manifest["notes"])
    if server_faults.get("metrics"):
        assert all(s["kv_samples"] == 0 and "kv_note" in s for s in summary["conditions"].values())
    return stats


def _merge(into: dict, s: dict):
    for k in ("runs", "requests", "rows", "tracebacks", "lost"):
        into[k] += s[k]
    for k, v in s["outcomes"].items():
        into["outcomes"][k] = into["outcomes"].get(k, 0) + v


@pytest.mark.parametrize("klass", list(CLASSES))
def test_fault_class(klass, tmp_path, capfd):
    """All runs of one fault class, six at a time (each with its own fault server)."""
    lock = threading.Lock()

    def capture():
        with lock:
            out, err = capfd.readouterr()
            return out + err
    total = _new_stats()
    with ThreadPoolExecutor(6) as pool:
        for s in pool.map(lambda i: _one_run(klass, i, tmp_path, capture), range(CLASSES[klass][1])):
            _merge(total, s)
    total["tracebacks"] += capture().count("Traceback")
    FUZZ_TABLE[klass] = total
    assert total["tracebacks"] == 0 and total["lost"] == 0 and total["rows"] == total["requests"]


def _interrupt_after(n: int):
    def hook(i):
        if i == n:   # shortly after the n-th completion request arrived: it is in flight
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    return hook


@pytest.fixture()
def sigint_raises():
    """Ctrl-C as in a terminal: Python's default SIGINT handler. A process started in the
    background by a non-interactive shell inherits SIGINT *ignored* (POSIX), and Python then
    installs no handler, so the injected Ctrl-C would be lost; set it for the test, restore after."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("in_loop", [False, True], ids=["plain", "in_running_loop"])
def test_ctrl_c_mid_run(in_loop, tmp_path, capfd, sigint_raises):
    """Ctrl-C while requests stream: every request still has a row (ok/cancelled/not_sent),
    summary and manifest (``interrupted``) are written, KeyboardInterrupt reaches the caller.
    ``in_running_loop``: run_profile called from inside a running event loop, like a Jupyter
    cell (the loop runs without asyncio.run's SIGINT handler, as ipykernel's does)."""
    stats = _new_stats()
    for i in range(4):
        recs, wl = _workload(tmp_path / f"c{i}", 500 + i, n_per_condition=4)
        # the first condition (c=1) streams normally; the second (c=3) stalls: Ctrl-C lands
        # while 1 + i % 3 of its requests are in flight
        faults = {_key(r["prompt"]): "stall_mid_stream" if r["concurrency"] == 3 else "ok" for r in recs}
        cfg = ServingConfig(output_dir=str(tmp_path / f"c{i}" / "out"), request_timeout=30, metrics_interval_ms=20,
                            tokenizer="none", model_name="fuzz")
        with FaultServer(faults, on_completion=_interrupt_after(5 + i % 3)) as srv:
            cfg = cfg.replace(vllm_url=srv.url)
            stats["runs"] += 1
            with pytest.raises(KeyboardInterrupt):
                if in_loop:
                    async def cell(cfg=cfg, wl=wl):
                        return run_profile(cfg, workload_path=wl)
                    loop = asyncio.new_event_loop()
                    try:
                        loop.run_until_complete(cell())
                    finally:
                        loop.close()
                else:
                    run_profile(cfg, workload_path=wl)
        out, err = capfd.readouterr()
        run_dir = next((tmp_path / f"c{i}" / "out").iterdir())
        rows, _, manifest = _check_run(run_dir, recs, None, stats, out + err)
        assert manifest["status"] == "interrupted" and manifest["message"].startswith("interrupted")
        outcomes = {r["outcome"] for r in rows}
        assert outcomes <= {"ok", "cancelled", "not_sent"} and "cancelled" in outcomes, outcomes
    FUZZ_TABLE[f"ctrl_c_{'in_loop' if in_loop else 'plain'}"] = stats
    assert stats["tracebacks"] == 0 and stats["lost"] == 0


def test_zz_fault_table(capsys):
    """Prints the table (class, runs, requests, rows, tracebacks, lost rows) and checks the total."""
    if len(FUZZ_TABLE) < len(CLASSES):
        pytest.skip("needs the other tests of this module in the same session")
    lines = [f"{'class':<22}{'runs':>6}{'requests':>10}{'rows':>7}{'tracebacks':>12}{'lost rows':>11}  outcomes"]
    total = _new_stats()
    for k, s in FUZZ_TABLE.items():
        _merge(total, s)
        lines.append(f"{k:<22}{s['runs']:>6}{s['requests']:>10}{s['rows']:>7}{s['tracebacks']:>12}{s['lost']:>11}  "
                     + ", ".join(f"{o}:{n}" for o, n in sorted(s["outcomes"].items())))
    lines.append(f"{'total':<22}{total['runs']:>6}{total['requests']:>10}{total['rows']:>7}{total['tracebacks']:>12}"
                 f"{total['lost']:>11}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    Path(os.environ.get("PDLIB_FUZZ_TABLE", "/tmp/pdlib_fuzz_serving_table.txt")).write_text("\n".join(lines) + "\n")
    assert total["runs"] >= 100 and total["tracebacks"] == 0 and total["lost"] == 0
    assert total["rows"] == total["requests"]
