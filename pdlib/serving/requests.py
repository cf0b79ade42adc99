"""Async request runner: streams ``/v1/completions`` per workload record with httpx, at the
condition's concurrency (a semaphore per condition; conditions run one after another), and
writes one ``request_trace.csv`` row per request as it finishes (flushed per row).

Every fault is a row, never a traceback: ``outcome`` is ``ok``, ``http_4xx``, ``http_5xx``,
``timeout`` (the per-request REQUEST_TIMEOUT, whole request), ``refused`` (connection refused),
``disconnected`` (the server closed the stream mid-response, e.g. killed), ``incomplete``
(stream ended without ``[DONE]``) or ``error``. Times are wall-clock epoch seconds.
"""
from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import numpy as np

from .workload import conditions

TRACE_FIELDS = ("request_id", "condition", "input_len", "output_len", "concurrency", "prefix_mode",
                "t_start", "t_first_token", "t_end", "ttft_s", "tpot_s", "latency_s",
                "tokens_in", "tokens_out", "http_status", "outcome", "error")
FAILURE_KINDS = ("http_4xx", "http_5xx", "timeout", "refused", "disconnected", "incomplete", "error")


class TraceWriter:
    """Appends rows to a CSV, flushing each row (an interrupted run keeps what finished)."""

    def __init__(self, path, fields=TRACE_FIELDS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        self._w = csv.DictWriter(self._f, fieldnames=list(fields), extrasaction="ignore")
        if new:
            self._w.writeheader()
            self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow(row)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def done_request_ids(path) -> set[str]:
    """Ids with an ``ok`` row in an existing trace (skipped when a run resumes)."""
    path = Path(path)
    if not path.exists():
        return set()
    with open(path, newline="", encoding="utf-8") as f:
        return {r["request_id"] for r in csv.DictReader(f) if r.get("outcome") == "ok"}


def request_body(rec: dict, model: str) -> dict:
    """vLLM completion request that generates exactly output_len tokens (EOS ignored)."""
    return {"model": model, "prompt": rec["prompt"], "max_tokens": rec["output_len"],
            "min_tokens": rec["output_len"], "ignore_eos": True, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}


def _classify(exc: BaseException) -> str:
    import httpx
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return "disconnected"
    return "error"


async def run_one(client, url: str, model: str, rec: dict, timeout: float) -> dict:
    row = {k: rec[k] for k in ("request_id", "condition", "input_len", "output_len", "concurrency", "prefix_mode")}
    row.update(t_start=time.time(), t_first_token="", t_end="", ttft_s="", tpot_s="", latency_s="",
               tokens_in="", tokens_out=0, http_status=0, outcome="error", error="")
    chunks, usage, finished = 0, None, False
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", f"{url}/v1/completions", json=request_body(rec, model)) as resp:
                row["http_status"] = resp.status_code
                if resp.status_code != 200:
                    body = (await resp.aread()).decode("utf-8", "replace")
                    row["outcome"] = "http_5xx" if resp.status_code >= 500 else "http_4xx"
                    row["error"] = body[:300]
                else:
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            finished = True
                            break
                        msg = json.loads(data)
                        if msg.get("usage"):
                            usage = msg["usage"]
                        if msg.get("choices"):
                            if not row["t_first_token"]:
                                row["t_first_token"] = time.time()
                            chunks += 1
                    row["outcome"] = "ok" if finished else "incomplete"
    except Exception as e:  # noqa: BLE001 - every fault becomes a row (cancellation still propagates)
        row["outcome"] = _classify(e)
        row["error"] = (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:300]
        if row["outcome"] == "timeout":
            row["error"] = f"no complete response within REQUEST_TIMEOUT={timeout:g} s"
    row["t_end"] = time.time()
    row["latency_s"] = row["t_end"] - row["t_start"]
    row["tokens_out"] = int(usage["completion_tokens"]) if usage else chunks
    if usage:
        row["tokens_in"] = int(usage["prompt_tokens"])
    if row["t_first_token"]:
        row["ttft_s"] = row["t_first_token"] - row["t_start"]
        if row["tokens_out"] > 1 and row["outcome"] == "ok":
            row["tpot_s"] = (row["t_end"] - row["t_first_token"]) / (row["tokens_out"] - 1)
    return row


async def run_requests_async(records: list[dict], url: str, model: str, trace_path, *, timeout: float,
                             skip_ids: set[str] = frozenset(), on_condition=None) -> list[dict]:
    """Run all records condition by condition; returns the rows written."""
    import httpx
    writer = TraceWriter(trace_path)
    rows: list[dict] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    # httpx's own timeouts are per read; the whole-request limit is asyncio.timeout in run_one.
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
        try:
            for cond, conc, recs in conditions(records):
                todo = [r for r in recs if r["request_id"] not in skip_ids]
                if on_condition:
                    on_condition(cond, "start", len(todo))
                sem = asyncio.Semaphore(conc)

                async def guarded(r, sem=sem):
                    async with sem:
                        row = await run_one(client, url, model, r, timeout)
                        writer.write(row)
                        rows.append(row)
                await asyncio.gather(*(guarded(r) for r in todo))
                if on_condition:
                    on_condition(cond, "end", len(todo))
        finally:
            writer.close()
    return rows


def run_requests(records, url, model, trace_path, *, timeout: float, resume: bool = True) -> list[dict]:
    """Synchronous wrapper; with ``resume`` the ids already ``ok`` in trace_path are skipped."""
    skip = done_request_ids(trace_path) if resume else set()
    return asyncio.run(run_requests_async(records, url, model, trace_path, timeout=timeout, skip_ids=skip))


def count_outcomes(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
    return out


def percentiles(values, qs=(50, 90, 99)) -> dict[str, float | None]:
    v = np.asarray([float(x) for x in values if x not in ("", None) and np.isfinite(float(x))])
    return {f"p{q}": (float(np.percentile(v, q)) if len(v) else None) for q in qs}
