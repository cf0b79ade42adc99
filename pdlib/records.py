"""Per-step records shared by every engine (sim, native, vllm) and the run result.

One row per engine step. The schema is the contract between engines and the
analysis code: ``step`` (0-based), ``phase`` (``"prefill"`` | ``"decode"``),
``batch_size`` (requests in the step), ``tokens`` (tokens processed: prompt
tokens for a prefill, one per request for a decode), ``kv_tokens`` (KV tokens
held *after* the step), ``kv_bytes`` (bytes held for them, ``None`` when the
engine has no byte figure), ``duration_s`` (device-timed step time; the timing
model's value in the simulator), ``k`` (the policy's refill size when the step
ran), ``finished`` (ids of requests that completed in the step) and
``admitted`` (ids admitted by a prefill step).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PHASES = ("prefill", "decode")
COLUMNS = ("step", "phase", "batch_size", "tokens", "kv_tokens", "kv_bytes",
           "duration_s", "k", "finished", "admitted")


@dataclass(slots=True)
class StepRecord:
    step: int
    phase: str
    batch_size: int
    tokens: int
    kv_tokens: int
    duration_s: float
    k: int
    kv_bytes: int | None = None
    finished: list = field(default_factory=list)
    admitted: list = field(default_factory=list)


class StepLog:
    """Columnar per-step log: numpy arrays for the numeric columns, lists of ids.

    The simulator builds it from arrays directly (``StepLog.from_columns``);
    real engines append ``StepRecord`` objects one step at a time.
    """

    def __init__(self):
        self._rows: list[StepRecord] = []
        self._cols: dict | None = None

    def append(self, rec: StepRecord) -> None:
        if rec.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {rec.phase!r}")
        self._rows.append(rec)
        self._cols = None

    def __len__(self) -> int:
        return len(self._rows) if self._cols is None or self._rows else len(self._cols["step"])

    @classmethod
    def from_columns(cls, **cols) -> StepLog:
        missing = set(COLUMNS) - set(cols)
        if missing:
            raise ValueError(f"missing columns: {sorted(missing)}")
        log = cls()
        n = len(cols["step"])
        for name in COLUMNS:
            if len(cols[name]) != n:
                raise ValueError(f"column {name!r} has {len(cols[name])} rows, expected {n}")
        log._cols = {name: cols[name] for name in COLUMNS}
        return log

    @property
    def columns(self) -> dict:
        """Numeric columns as numpy arrays (phase as a bool array ``is_prefill`` too)."""
        if self._cols is None:
            rows = self._rows
            self._cols = {
                "step": np.array([r.step for r in rows], dtype=np.int64),
                "phase": np.array([r.phase for r in rows], dtype=object),
                "batch_size": np.array([r.batch_size for r in rows], dtype=np.int64),
                "tokens": np.array([r.tokens for r in rows], dtype=np.int64),
                "kv_tokens": np.array([r.kv_tokens for r in rows], dtype=np.int64),
                "kv_bytes": np.array([np.nan if r.kv_bytes is None else r.kv_bytes for r in rows],
                                     dtype=np.float64),
                "duration_s": np.array([r.duration_s for r in rows], dtype=np.float64),
                "k": np.array([r.k for r in rows], dtype=np.int64),
                "finished": [list(r.finished) for r in rows],
                "admitted": [list(r.admitted) for r in rows],
            }
            self._rows = []
        return self._cols

    def __getitem__(self, name):
        return self.columns[name]

    def is_prefill(self) -> np.ndarray:
        ph = self.columns["phase"]
        return ph == "prefill" if ph.dtype == object else ph.astype(bool)

    def to_frame(self):
        import pandas as pd
        cols = dict(self.columns)
        return pd.DataFrame(cols, columns=list(COLUMNS))

    def records(self):
        c = self.columns
        for i in range(len(c["step"])):
            yield {name: (c[name][i].item() if hasattr(c[name][i], "item") else c[name][i])
                   for name in COLUMNS}


def request_row(id, input_len, output_len, ref_output_len, admit_step, finish_step, truncated,
                **extra) -> dict:
    """The one per-request result row of ``RunResult.requests`` (every engine builds it here):
    ``finish_step`` is None for a request that never finished; ``extra`` adds engine-specific
    fields (``finish_reason``, ``output_ids``)."""
    return {"id": id, "input_len": int(input_len), "output_len": int(output_len),
            "ref_output_len": int(ref_output_len),
            "admit_step": None if admit_step is None else int(admit_step),
            "finish_step": None if finish_step is None else int(finish_step),
            "truncated": bool(truncated), **extra}


def request_rows(ids, input_len, output_len, ref_output_len, admit_step, finish_step, truncated) -> list[dict]:
    """``request_row`` over whole columns (the simulator's 5,000-request runs), read as plain
    lists first (indexing numpy arrays per element was the cost); a negative ``admit_step`` or
    ``finish_step`` means None."""
    cols = [np.asarray(c).tolist() for c in (input_len, output_len, ref_output_len, admit_step, finish_step,
                                             truncated)]
    return [request_row(i, a, b, c, None if d < 0 else d, None if e < 0 else e, t)
            for i, a, b, c, d, e, t in zip(ids, *cols)]


@dataclass
class RunResult:
    """What every engine's ``run`` returns.

    ``requests`` holds one dict per request: ``id``, ``input_len``,
    ``output_len`` (tokens generated), ``ref_output_len``, ``admit_step``,
    ``finish_step``, ``truncated`` (stopped by max_tokens under model
    termination) and optionally ``output_ids``.
    ``meta`` says which engine, model, device, termination and policy ran.
    """
    log: StepLog
    requests: list[dict]
    meta: dict

    @property
    def total_time_s(self) -> float:
        return float(np.sum(self.log["duration_s"]))

    @property
    def requests_per_s(self) -> float:
        t = self.total_time_s
        return len([r for r in self.requests if r.get("finish_step") is not None]) / t if t > 0 else float("nan")

    @property
    def output_tokens_per_s(self) -> float:
        t = self.total_time_s
        return sum(r["output_len"] for r in self.requests) / t if t > 0 else float("nan")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class ProfileResult:
    """Timing samples from an engine and the fitted two-term models.

    ``prefill`` rows: ``tokens`` (total prompt tokens in the step), ``num_requests``,
    ``seconds``. ``decode`` rows: ``batch``, ``context_len`` (tokens per request),
    ``seconds``. ``timing`` is ``theory.fit_timing`` over them (decode fitted on batch
    only, as the paper does; ``decode_context_effect`` says how much variance that misses).
    """
    prefill: list[dict]
    decode: list[dict]
    timing: object
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_samples(cls, prefill: list[dict], decode: list[dict], meta: dict | None = None):
        from . import theory
        timing = theory.fit_timing([r["tokens"] for r in prefill], [r["seconds"] for r in prefill],
                                   [r["batch"] for r in decode], [r["seconds"] for r in decode])
        return cls(list(prefill), list(decode), timing, dict(meta or {}))

    def decode_context_effect(self) -> dict:
        """R^2 of the 2-term decode model vs a 3-term model adding batch*context (KV read)."""
        y = np.array([r["seconds"] for r in self.decode], dtype=float)
        j = np.array([r["batch"] for r in self.decode], dtype=float)
        c = np.array([r.get("context_len", 0) for r in self.decode], dtype=float)
        ss = float(np.sum((y - y.mean()) ** 2)) or 1.0
        r2 = {}
        for name, A in (("batch", np.column_stack([np.ones_like(j), j])),
                        ("batch+batch_x_context", np.column_stack([np.ones_like(j), j, j * c]))):
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            r2[name] = 1 - float(np.sum((y - A @ coef) ** 2)) / ss
        return {"r2_two_term": r2["batch"], "r2_with_context": r2["batch+batch_x_context"],
                "variance_missed_by_two_term": r2["batch+batch_x_context"] - r2["batch"]}

    @classmethod
    def from_dict(cls, d: dict) -> ProfileResult:
        """The inverse of ``to_dict`` (a saved ``{dataset}_profiling.json``)."""
        from . import theory
        return cls(d["prefill"], d["decode"], theory.TimingModel.from_dict(d["timing"], "profile timing"),
                   d.get("meta", {}))

    def to_dict(self) -> dict:
        return {"prefill": self.prefill, "decode": self.decode, "timing": asdict(self.timing),
                "meta": self.meta}
