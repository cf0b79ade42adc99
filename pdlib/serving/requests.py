"""Async request runner: streams ``/v1/completions`` per workload record with httpx, at the
condition's concurrency (a semaphore per condition; conditions run one after another), and
writes one ``request_trace.csv`` row per request as it finishes (flushed per row).

Every request of the workload ends as exactly one row, whatever the server sends; ``outcome``:

- ``ok``: HTTP 200, a well-formed SSE stream ending with ``[DONE]``, usage with its token counts;
- ``http_4xx`` / ``http_5xx``: the status code (429 included), ``error`` holds the body's start;
- ``timeout``: no complete response within REQUEST_TIMEOUT (the whole request);
- ``refused``: the connection was refused (nothing listening);
- ``disconnected``: the server closed or reset the connection mid-response;
- ``incomplete``: the stream ended cleanly but without ``[DONE]``;
- ``malformed``: the stream ended with ``[DONE]`` but had lines that are not SSE, data that is
  not a JSON object, or a usage chunk without valid ``prompt_tokens``/``completion_tokens``
  (``tokens_out`` then counts the streamed chunks; ``error`` says what was wrong);
- ``error``: anything else (an error event in the stream, an unexpected exception: its type);
- ``cancelled``: in flight when the run was interrupted (Ctrl-C) or stopped;
- ``not_sent``: never sent because the run was interrupted or stopped first.

Times are wall-clock epoch seconds. ``run_sync`` runs a coroutine from plain code and from a
thread that already runs an event loop (Jupyter, papermill) alike.
"""
from __future__ import annotations

import asyncio
import csv
import json
import threading
import time
from pathlib import Path

import numpy as np

from .workload import conditions

TRACE_FIELDS = ("request_id", "condition", "input_len", "output_len", "concurrency", "prefix_mode",
                "t_start", "t_first_token", "t_end", "ttft_s", "tpot_s", "latency_s",
                "tokens_in", "tokens_out", "http_status", "outcome", "error")
FAILURE_KINDS = ("http_4xx", "http_5xx", "timeout", "refused", "disconnected", "incomplete", "malformed",
                 "error", "cancelled", "not_sent")
OUTCOMES = ("ok", *FAILURE_KINDS)
_SSE_FIELDS = ("data", "event", "id", "retry")


class TraceWriter:
    """Appends rows to a CSV, flushing each row (an interrupted run keeps what finished). An
    existing file keeps its own header (rows of a resumed run line up with it)."""

    def __init__(self, path, fields=TRACE_FIELDS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header, torn = _existing_header(self.path)
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        if torn:   # a row cut off by a kill: end it, so the next row starts on its own line
            self._f.write("\n")
        self._w = csv.DictWriter(self._f, fieldnames=list(header or fields), extrasaction="ignore")
        if not header:
            self._w.writeheader()
        self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow(row)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _existing_header(path: Path) -> tuple[list[str] | None, bool]:
    """(header of an existing non-empty CSV or None, whether its last line lacks a newline)."""
    if not path.exists() or path.stat().st_size == 0:
        return None, False
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", "replace").strip()
        f.seek(-1, 2)
        torn = f.read(1) != b"\n"
    return (next(csv.reader([first])) if first else None), torn


def done_request_ids(path) -> set[str]:
    """Ids with an ``ok`` row in an existing trace (skipped when a run resumes)."""
    path = Path(path)
    if not path.exists():
        return set()
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return {r["request_id"] for r in csv.DictReader(f) if r.get("outcome") == "ok" and r.get("request_id")}


def request_body(rec: dict, model: str) -> dict:
    """vLLM completion request that generates exactly output_len tokens (EOS ignored)."""
    return {"model": model, "prompt": rec["prompt"], "max_tokens": rec["output_len"],
            "min_tokens": rec["output_len"], "ignore_eos": True, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}


def new_row(rec: dict, outcome: str = "error", error: str = "") -> dict:
    row = {k: rec.get(k, "") for k in ("request_id", "condition", "input_len", "output_len", "concurrency",
                                       "prefix_mode")}
    now = time.time()
    row.update(t_start=now, t_first_token="", t_end=now, ttft_s="", tpot_s="", latency_s=0.0,
               tokens_in="", tokens_out=0, http_status=0, outcome=outcome, error=error)
    return row


class _Stream:
    """What one SSE response carried: chunks with choices, the usage, [DONE], and problems."""

    def __init__(self):
        self.chunks, self.usage, self.done, self.t_first = 0, None, False, None
        self.problems: list[str] = []
        self.n_problems = 0
        self.server_error = ""

    def _problem(self, what: str) -> None:
        self.n_problems += 1
        if len(self.problems) < 3:
            self.problems.append(what[:120])

    def feed(self, line: str) -> bool:
        """One line of the body; True once ``[DONE]`` arrived."""
        line = line.rstrip("\r")
        if not line or line.startswith(":"):
            return False
        name, sep, value = line.partition(":")
        if not sep or name not in _SSE_FIELDS:
            self._problem(f"not an SSE line: {line[:60]!r}")
            return False
        if name != "data":
            return False
        data = value.strip()
        if data == "[DONE]":
            self.done = True
            return True
        try:
            msg = json.loads(data)
        except ValueError:
            self._problem(f"data is not JSON: {data[:60]!r}")
            return False
        if not isinstance(msg, dict):
            self._problem(f"data is not a JSON object: {data[:60]!r}")
            return False
        if msg.get("error"):
            self.server_error = str(msg["error"])[:200]
        choices = msg.get("choices")
        if choices:
            if not isinstance(choices, list):
                self._problem("'choices' is not a list")
            else:
                if self.t_first is None:
                    self.t_first = time.time()
                self.chunks += 1
        if "usage" in msg and msg["usage"] is not None:
            self._read_usage(msg["usage"])
        return False

    def _read_usage(self, usage) -> None:
        if not isinstance(usage, dict):
            self._problem("'usage' is not an object")
            return
        good = {}
        for key in ("prompt_tokens", "completion_tokens"):
            v = usage.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
                self._problem(f"usage without a valid {key} ({v!r})")
            else:
                good[key] = int(v)
        self.usage = good

    def outcome(self) -> tuple[str, str]:
        problems = "; ".join(self.problems) + (f" (+{self.n_problems - 3} more)" if self.n_problems > 3 else "")
        if self.server_error:
            return "error", f"server sent an error in the stream: {self.server_error}"
        if not self.done:
            return "incomplete", (f"stream ended without [DONE] after {self.chunks} chunks"
                                  + (f"; {problems}" if problems else ""))
        if self.usage is None:
            self._problem("no usage chunk (asked for with stream_options.include_usage)")
            problems = "; ".join(self.problems)
        if self.n_problems:
            return "malformed", f"{problems}; tokens_out counted from chunks where usage lacks it"
        return "ok", ""


def _classify(exc: BaseException) -> str:
    import httpx
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "disconnected"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc).lower()
        return "disconnected" if any(w in text for w in ("disconnect", "peer closed", "incomplete")) else "malformed"
    if isinstance(exc, httpx.DecodingError):
        return "malformed"
    return "error"


async def run_one(client, url: str, model: str, rec: dict, timeout: float, row: dict | None = None) -> dict:
    """Send one request and fill ``row`` (made here unless given, so a caller can finish it
    when the request is cancelled); never raises except on cancellation."""
    row = new_row(rec) if row is None else row
    row["t_start"] = time.time()
    stream = _Stream()
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", f"{url}/v1/completions", json=request_body(rec, model)) as resp:
                row["http_status"] = resp.status_code
                if resp.status_code != 200:
                    body = (await resp.aread()).decode("utf-8", "replace")
                    row["outcome"] = "http_5xx" if resp.status_code >= 500 else "http_4xx"
                    row["error"] = f"HTTP {resp.status_code}: {body}"[:300]
                else:
                    async for line in resp.aiter_lines():
                        if stream.feed(line):
                            break
                    row["outcome"], row["error"] = stream.outcome()
    except Exception as e:  # noqa: BLE001 - every fault becomes a row (cancellation still propagates)
        row["outcome"] = _classify(e)
        row["error"] = (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:300]
        if row["outcome"] == "timeout":
            row["error"] = f"no complete response within REQUEST_TIMEOUT={timeout:g} s"
    finally:
        finish_row(row, stream)
    return row


def finish_row(row: dict, stream: _Stream | None = None) -> dict:
    row["t_end"] = time.time()
    row["latency_s"] = row["t_end"] - row["t_start"]
    if stream is None:
        return row
    usage = stream.usage or {}
    row["tokens_out"] = usage.get("completion_tokens", stream.chunks)
    row["tokens_in"] = usage.get("prompt_tokens", "")
    if stream.t_first is not None:
        row["t_first_token"] = stream.t_first
        row["ttft_s"] = stream.t_first - row["t_start"]
        if row["tokens_out"] > 1 and row["outcome"] == "ok":
            row["tpot_s"] = (row["t_end"] - stream.t_first) / (row["tokens_out"] - 1)
    return row


async def run_requests_async(records: list[dict], url: str, model: str, trace_path, *, timeout: float,
                             skip_ids: set[str] = frozenset(), on_condition=None) -> list[dict]:
    """Run all records condition by condition; returns the rows written, exactly one per
    record not in ``skip_ids`` (also when interrupted: ``cancelled`` / ``not_sent`` rows)."""
    import httpx
    writer = TraceWriter(trace_path)
    rows: list[dict] = []
    written: set[str] = set()
    todo_all = [r for r in records if r["request_id"] not in skip_ids]

    def record(row: dict) -> None:
        if row["request_id"] not in written:
            written.add(row["request_id"])
            writer.write(row)
            rows.append(row)

    async def guarded(client, r, sem):
        async with sem:
            row = new_row(r)
            try:
                await run_one(client, url, model, r, timeout, row=row)
            except asyncio.CancelledError:
                record(finish_row({**row, "outcome": "cancelled",
                                   "error": "run interrupted while this request was in flight"}))
                raise
            except Exception as e:  # noqa: BLE001 - a bug here must still leave a row
                row.update(outcome="error", error=f"{type(e).__name__}: {e}"[:300])
            record(row)

    stopped_by = "run interrupted before this request was sent"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    try:
        # httpx's own timeouts are per read; the whole-request limit is asyncio.timeout in run_one.
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
            for cond, conc, recs in conditions(todo_all):
                if on_condition:
                    on_condition(cond, "start", len(recs))
                sem = asyncio.Semaphore(conc)
                await asyncio.gather(*(guarded(client, r, sem) for r in recs), return_exceptions=True)
                if on_condition:
                    on_condition(cond, "end", len(recs))
    except Exception as e:
        stopped_by = f"run stopped before this request was sent ({type(e).__name__}: {e})"[:300]
        raise
    finally:
        try:
            for r in todo_all:
                if r["request_id"] not in written:
                    record(new_row(r, "not_sent", stopped_by))
        finally:
            writer.close()
    return rows


def run_sync(make_coro):
    """``make_coro()`` run to completion and its result: by ``asyncio.run`` when this thread
    runs no event loop, else (Jupyter, papermill) on a fresh loop in a worker thread. Ctrl-C
    cancels the coroutine (its cleanup runs) and raises KeyboardInterrupt either way."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict = {}
    started = threading.Event()

    def worker():
        loop = asyncio.new_event_loop()
        try:
            box["task"], box["loop"] = loop.create_task(make_coro()), loop
            started.set()
            box["result"] = loop.run_until_complete(box["task"])
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread
            box["error"] = e
        finally:
            started.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    t = threading.Thread(target=worker, name="pdlib-serving-loop", daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.1)
    except KeyboardInterrupt:
        started.wait()
        if "task" in box and not box["loop"].is_closed():
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        t.join()
        raise
    err = box.get("error")
    if isinstance(err, asyncio.CancelledError):
        raise KeyboardInterrupt
    if err is not None:
        raise err
    return box["result"]


def run_requests(records, url, model, trace_path, *, timeout: float, resume: bool = True) -> list[dict]:
    """Synchronous wrapper; with ``resume`` the ids already ``ok`` in trace_path are skipped."""
    skip = done_request_ids(trace_path) if resume else set()
    return run_sync(lambda: run_requests_async(records, url, model, trace_path, timeout=timeout, skip_ids=skip))


def count_outcomes(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
    return out


def _finite(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def percentiles(values, qs=(50, 90, 99)) -> dict[str, float | None]:
    v = np.asarray([f for f in map(_finite, values) if f is not None])
    return {f"p{q}": (float(np.percentile(v, q)) if len(v) else None) for q in qs}
