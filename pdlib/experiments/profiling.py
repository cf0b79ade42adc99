"""Profiling (notebook 01): an engine's step timings, the fitted two-term timing model,
and the workload's input/output length statistics with p = 1/mean(output).

``load_or_profile`` keeps the fit in ``{dataset}_profiling.json`` in the cell's output
folder so notebooks 02 and 03 reuse the timing that 01 measured (and profile themselves
when run alone). ``profiling_experiment`` returns the lengths and the fit as a
``ProfilingResult``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pdlib import theory
from pdlib.data import workload_stats
from pdlib.experiments.result import LIVE, jsonable, read_json, write_json
from pdlib.records import ProfileResult

PROFILE_NAME = "{dataset}_profiling.json"


def _dist(x) -> dict:
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return {"count": 0}
    return {"count": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)),
            "p95": float(np.percentile(x, 95)), "max": float(x.max()), "min": float(x.min()),
            "std": float(x.std())}


def length_stats(workload) -> dict:
    """Input/output token statistics of a workload, p = 1/mean(output), truncation and skips.

    p is biased upward when outputs were capped at ``max_output_tokens``
    (``truncated`` counts them)."""
    inp, out = workload.input_lens, workload.output_lens
    skipped = {}
    for s in workload.skipped:
        skipped[s.reason] = skipped.get(s.reason, 0) + 1
    stats = {"dataset": workload.name, "input": _dist(inp), "output": _dist(out),
             "p": theory.p_offline(out) if len(out) else None,
             "truncated": int(workload.num_truncated), "skipped": len(workload.skipped),
             "skipped_by_reason": skipped}
    stats["data_stats"] = jsonable(workload_stats(workload))
    return stats


def timing_summary(prof: ProfileResult) -> dict:
    """alpha/beta with R^2, sample counts, and how much decode variance the 2-term model misses."""
    t = prof.timing
    out = {**asdict(t), "n_prefill": len(prof.prefill), "n_decode": len(prof.decode)}
    try:
        out["decode_context_effect"] = prof.decode_context_effect()
    except (ValueError, np.linalg.LinAlgError, KeyError) as e:
        out["decode_context_effect"] = {"error": str(e)}
    return out


def residuals(prof: ProfileResult) -> dict:
    """Residuals (measured - fitted, seconds) of both fits, for the residual plots."""
    t = prof.timing
    pt = np.array([r["tokens"] for r in prof.prefill], float)
    ps = np.array([r["seconds"] for r in prof.prefill], float)
    db = np.array([r["batch"] for r in prof.decode], float)
    ds = np.array([r["seconds"] for r in prof.decode], float)
    return {"prefill_tokens": pt, "prefill_resid_s": ps - t.prefill_time(pt),
            "decode_batch": db, "decode_resid_s": ds - t.decode_time(db)}


def run_profile(engine, **kwargs) -> ProfileResult:
    """``engine.profile(**kwargs)`` (kwargs from the engine YAML's ``profile`` section)."""
    prof = engine.profile(**kwargs)
    if not isinstance(prof, ProfileResult):
        raise TypeError(f"{type(engine).__name__}.profile returned {type(prof).__name__}, expected ProfileResult")
    return prof


@dataclass
class ProfilingResult:
    """Notebook 01's result: the workload's length statistics (``length_stats``), the engine's
    step timings (``profile``, a ``ProfileResult``) and their summary (``timing_summary``).
    ``to_json()`` is the section ``profiling`` of ``{dataset}_results.json``."""
    lengths: dict
    timing: dict
    profile: ProfileResult = field(default=None, repr=False, metadata=LIVE)

    @property
    def p(self) -> float | None:
        return self.lengths["p"]

    def residuals(self) -> dict:
        return residuals(self.profile)

    def to_json(self) -> dict:
        return jsonable({"p": self.p, "timing": self.timing, "lengths": self.lengths})


def profiling_experiment(engine, workload, **profile_kwargs) -> ProfilingResult:
    """``length_stats(workload)``, then ``run_profile(engine, **profile_kwargs)`` and its summary."""
    lengths = length_stats(workload)
    prof = run_profile(engine, **profile_kwargs)
    return ProfilingResult(lengths=lengths, timing=timing_summary(prof), profile=prof)


def profile_path(output_dir, dataset) -> Path:
    return Path(output_dir) / PROFILE_NAME.format(dataset=dataset)


def save_profile(output_dir, dataset, prof: ProfileResult) -> Path:
    return write_json(profile_path(output_dir, dataset), prof.to_dict())


def load_or_profile(cell, engine=None) -> ProfileResult:
    """The cell's profile: reuse ``{dataset}_profiling.json`` when notebook 01 wrote it,
    else profile ``engine`` (built from the cell when None) and save it."""
    saved = read_json(profile_path(cell.output_dir, cell.dataset))
    if saved:
        return ProfileResult.from_dict(saved)
    engine = engine or cell.make_engine()
    prof = run_profile(engine, **(cell.engine_spec.get("profile") or {}))
    save_profile(cell.output_dir, cell.dataset, prof)
    return prof
