"""Profiling (notebook 01): an engine's step timings, the fitted two-term timing model,
and the workload's input/output length statistics with p = 1/mean(output).

``load_or_profile`` keeps the fit in ``{dataset}_profiling.json`` in the cell's output
folder so notebooks 02 and 03 reuse the timing that 01 measured (and profile themselves
when run alone). ``profiling_experiment`` returns the lengths and the fit as a
``ProfilingResult``.

The profile grid spans the run (issue 15): the grid fields the engine YAML's ``profile:``
section leaves out are derived from the workload and N (``engines.base.ProfileGrid.spanning``:
decode batches up to N, contexts up to the p95 of input + output, prefill sizes from 1 x to
N x the input length). ``fit_range_warnings`` lists every use of the fit beyond what it was
measured on (decode batch > the largest profiled, ...); results carry the list.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pdlib import theory
from pdlib.data import workload_stats
from pdlib.engines.base import ProfileGrid
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


GRID_FIELDS = ("prefill_tokens", "decode_batches", "context_lens")


def run_span(workload, N: int) -> dict:
    """What a run of N slots on ``workload`` asks of a timing fit: N, mean and p95 input, p95 of
    input + output (the context a decoding request reaches)."""
    inp = np.asarray(workload.input_lens, dtype=float)
    tot = inp + np.asarray(workload.output_lens, dtype=float)
    if inp.size == 0:
        raise ValueError(f"{getattr(workload, 'name', 'workload')}: no requests to derive a profile grid from")
    return {"N": int(N), "mean_input": float(inp.mean()), "p95_input": float(np.percentile(inp, 95)),
            "p95_context": float(np.percentile(tot, 95))}


def profile_kwargs_for(spec: dict | None, workload=None, N: int | None = None) -> tuple[dict, dict]:
    """(kwargs of ``engine.profile``, where the grid came from): the YAML ``profile`` section
    ``spec`` with the grid fields it leaves out derived from ``workload`` and ``N``
    (``ProfileGrid.spanning``; ``repeats`` from ``spec``, default 2). Without a workload or N
    the section is used as it is (the engine's defaults fill the rest)."""
    kw = dict(spec or {})
    missing = [f for f in GRID_FIELDS if f not in kw]
    if workload is None or N is None or not missing:
        return kw, {"explicit": [f for f in GRID_FIELDS if f in kw], "derived": []}
    span = run_span(workload, N)
    grid = ProfileGrid.spanning(span["N"], mean_input=max(span["mean_input"], 1.0),
                                p95_input=max(span["p95_input"], 1.0), p95_context=max(span["p95_context"], 1.0),
                                repeats=int(kw.get("repeats", 2)))
    kw.update({f: list(getattr(grid, f)) for f in missing})
    return kw, {"explicit": [f for f in GRID_FIELDS if f not in missing], "derived": missing, "span": span}


def fit_range_warnings(timing, workload, N: int, ks=None) -> list[dict]:
    """Every use of ``timing`` beyond its fitted ranges by k* and the simulation of a run of N
    slots on ``workload`` (``theory.TimingModel.extrapolation``): decode batches 1..N, prefill
    of k x mean input for k = 1..max(ks) (default N-1), contexts up to the p95 of input +
    output. Empty when the ranges are not recorded (published calibrations)."""
    if not hasattr(timing, "extrapolation"):
        return []
    span = run_span(workload, N)
    kmax = max([int(k) for k in ks] if ks else [max(N - 1, 1)])
    return [w.to_dict() for w in timing.extrapolation(
        decode_batch=[1, N], prefill_tokens=[span["mean_input"], kmax * span["mean_input"]],
        context=span["p95_context"])]


def fit_range_note(warnings) -> str:
    """The warnings as lines to print ("fit range: measured range covers the run" when none)."""
    if not warnings:
        return "fit range: the run stays inside the profiled ranges (no extrapolation)"
    return "\n".join(f"WARNING {w['message']}" for w in warnings)


def timing_summary(prof: ProfileResult) -> dict:
    """alpha/beta with R^2, sample counts, and how much decode variance the 2-term model misses."""
    t = prof.timing
    out = {**asdict(t), "n_prefill": len(prof.prefill), "n_decode": len(prof.decode),
           "grid": prof.meta.get("grid"), "capped": prof.meta.get("capped", []),
           "skipped": prof.meta.get("skipped", [])}
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


def run_profile(engine, workload=None, N: int | None = None, **kwargs) -> ProfileResult:
    """``engine.profile(**kwargs)`` (kwargs from the engine YAML's ``profile`` section), the grid
    fields it leaves out derived from ``workload`` and ``N`` (``profile_kwargs_for``); the grid
    used and where it came from go in ``meta["grid"]``."""
    kw, source = profile_kwargs_for(kwargs, workload, N)
    prof = engine.profile(**kw)
    if not isinstance(prof, ProfileResult):
        raise TypeError(f"{type(engine).__name__}.profile returned {type(prof).__name__}, expected ProfileResult")
    prof.meta["grid"] = {**source, **{f: kw[f] for f in GRID_FIELDS if f in kw}}
    if prof.decode and prof.timing.context_range is None:
        prof.timing = prof.timing.with_ranges(context=[r.get("context_len", np.nan) for r in prof.decode])
    return prof


@dataclass
class ProfilingResult:
    """Notebook 01's result: the workload's length statistics (``length_stats``), the engine's
    step timings (``profile``, a ``ProfileResult``) and their summary (``timing_summary``).
    ``to_json()`` is the section ``profiling`` of ``{dataset}_results.json``."""
    lengths: dict
    timing: dict
    profile: ProfileResult = field(default=None, repr=False, metadata=LIVE)
    fit_range: list = field(default_factory=list)    # fit_range_warnings at the cell's N ([]: none)
    N: int | None = None

    @property
    def p(self) -> float | None:
        return self.lengths["p"]

    def residuals(self) -> dict:
        return residuals(self.profile)

    def to_json(self) -> dict:
        return jsonable({"p": self.p, "timing": self.timing, "lengths": self.lengths, "N": self.N,
                         "fit_range": self.fit_range})


def profiling_experiment(engine, workload, N: int | None = None, **profile_kwargs) -> ProfilingResult:
    """``length_stats(workload)``, then ``run_profile(engine, workload, N, **profile_kwargs)``,
    its summary and (with N) the fit-range warnings of a run of N slots."""
    lengths = length_stats(workload)
    prof = run_profile(engine, workload, N, **profile_kwargs)
    warn = fit_range_warnings(prof.timing, workload, N) if N is not None else []
    return ProfilingResult(lengths=lengths, timing=timing_summary(prof), profile=prof, fit_range=warn, N=N)


def profile_path(output_dir, dataset) -> Path:
    return Path(output_dir) / PROFILE_NAME.format(dataset=dataset)


def save_profile(output_dir, dataset, prof: ProfileResult) -> Path:
    return write_json(profile_path(output_dir, dataset), prof.to_dict())


def load_or_profile(cell, engine=None, workload=None, N: int | None = None) -> ProfileResult:
    """The cell's profile: reuse ``{dataset}_profiling.json`` when notebook 01 wrote it,
    else profile ``engine`` (built from the cell when None; grid spanning ``workload`` at
    ``N`` when both are given) and save it."""
    saved = read_json(profile_path(cell.output_dir, cell.dataset))
    if saved:
        return ProfileResult.from_dict(saved)
    engine = engine or cell.make_engine()
    prof = run_profile(engine, workload, N, **(cell.engine_spec.get("profile") or {}))
    save_profile(cell.output_dir, cell.dataset, prof)
    return prof
