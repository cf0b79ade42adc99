"""The local executor with several cells at once (``pdlib run --jobs J``, default ``auto``).

A cell whose engine measures wall-clock time (``native``, ``vllm``: step times, throughput)
is **exclusive**: it runs alone, before the others, so nothing beside it disturbs its timings
(on a 2-core machine a second kernel beside a timed engine run slows its steps several-fold and
breaks the fit). Cells of the ``sim`` engine (their numbers come from a timing model, not from
the clock) run ``J`` at a time in a process pool, longest first (largest N): each worker calls
``pdlib.grid.run_cell`` -- the same function as the sequential loop and the Ray tasks -- so the
files, done-markers, ``--resume`` and failure records are the same. Workers are spawned (no
fork of a process that holds threads); one cell is always one worker, so no two processes write
the same cell folder; ``outputs/index.html`` is written by the driver only.

Ctrl-C: the pending cells are cancelled, the running ones get the interrupt with the rest of
the process group (their kernels too: a notebook that was interrupted has no done-marker, so
``--resume`` reruns it), and ``KeyboardInterrupt`` is raised after the workers are gone.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

CLOCK_ENGINES = ("native", "vllm")    # engine implementations whose results depend on wall time


def auto_jobs() -> int:
    """The CPUs this process may use (``auto``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:       # not Linux
        return max(1, os.cpu_count() or 1)


def outcome(notebook: str, outcome: str = "skipped", error: str | None = None, *, changed: bool = False,
            earlier_attempt: bool = False) -> dict:
    """One notebook's outcome in a grid run (``grid.run_cell``, a dead pool worker, a lost Ray task):
    ``{"notebook", "outcome": "ok" | "failed" | "skipped", "changed", "error", "earlier_attempt"}``."""
    return {"notebook": notebook, "outcome": outcome, "changed": changed, "error": error,
            "earlier_attempt": earlier_attempt}


def parse_jobs(value) -> int:
    """``--jobs``: a positive integer or ``auto``; a clear error otherwise."""
    if value is None or str(value).strip().lower() == "auto":
        return auto_jobs()
    try:
        n = int(str(value))
    except ValueError:
        raise ValueError(f"--jobs must be a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise ValueError(f"--jobs must be a positive integer or 'auto', got {value!r}")
    return n


def engine_spec(params: dict) -> dict | None:
    """A grid cell's engine YAML (``params/engines/<engine>.yaml``); None when it does not load
    (its notebook then fails and is recorded, whatever the executor)."""
    from pdlib.params import load_spec
    try:
        return load_spec("engine", str(params.get("engine")), params.get("params_dir"), params.get("data_dir"))
    except (FileNotFoundError, ValueError):
        return None


def exclusive(params: dict) -> bool:
    """True when the cell's engine YAML names a clock-timed engine (``CLOCK_ENGINES``); an engine
    YAML that does not load is not exclusive."""
    spec = engine_spec(params)
    return spec is not None and str(spec.get("engine") or params.get("engine")) in CLOCK_ENGINES


def _size(params: dict) -> float:
    """Rough cost of a sim cell, for longest-first order: slots x requests."""
    try:
        return float(params.get("N") or 1) * float(params.get("num_requests") or 1)
    except (TypeError, ValueError):
        return 0.0


def run_cells(cells, jobs: int, run_cell, *, on_start, on_cell, **kw) -> None:
    """Run ``cells`` (``pdlib.grid.cells_of``) with ``run_cell`` (``pdlib.grid.run_cell``, passed in
    so that this module does not import the grid; a module-level function, so it pickles by name
    into the workers). ``jobs`` 1: in the grid's order, in this process.
    Else the exclusive ones first, one at a time in this process (``kw['notify']`` reports each
    notebook), then the others ``jobs`` at a time, longest first.
    ``on_start(cell_name)`` when a pooled cell is submitted; ``on_cell(cell_name, outcomes, pooled)``
    when any cell is over (``pooled``: it ran in a worker, ``notify`` was not called for it; a worker
    that died gives every notebook of its cell a failed outcome)."""
    if jobs <= 1:
        for cell_name, out_dir, params, nbs in cells:     # the grid's order
            on_cell(cell_name, run_cell(cell_name, out_dir, params, nbs, **kw), False)
        return
    solo = [c for c in cells if exclusive(c[2])]
    shared = sorted((c for c in cells if c not in solo), key=lambda c: -_size(c[2]))
    for cell_name, out_dir, params, nbs in solo + (shared if len(shared) == 1 else []):
        on_cell(cell_name, run_cell(cell_name, out_dir, params, nbs, **kw), False)
    if len(shared) < 2:
        return
    pool_kw = {k: v for k, v in kw.items() if k != "notify"}
    ex = ProcessPoolExecutor(max_workers=min(jobs, len(shared)), mp_context=get_context("spawn"))
    todo, running = list(shared), {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                cell_name, out_dir, params, nbs = todo.pop(0)
                on_start(cell_name)
                running[ex.submit(run_cell, cell_name, out_dir, params, nbs, **pool_kw)] = (cell_name, nbs)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                cell_name, nbs = running.pop(fut)
                try:
                    outcomes = fut.result()
                except Exception as e:  # noqa: BLE001 - a dead worker fails its cell, the grid goes on
                    why = f"worker process failed: {type(e).__name__}: {e}"
                    outcomes = [outcome(nb, "failed", why) for nb in nbs]
                on_cell(cell_name, outcomes, True)
    except KeyboardInterrupt:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
