"""``pdlib findings``: the findings tables of a finished grid run (``pdlib.report.findings``) as
Markdown, e.g. ``pdlib findings --outputs outputs -o docs/findings.md`` after ``make report``."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from .output import CLIError, emit

REQUESTS_PER_SLOT = 8
COMMAND = "pdlib findings --outputs {outputs} --grid {grid} -o {out}"


def register(sub) -> None:
    p = sub.add_parser("findings", help="the findings tables of a grid run as Markdown (docs/findings.md)")
    p.add_argument("--outputs", default=None,
                   help="the grid run's output folder (default: $PDLIB_OUTPUTS_DIR, else outputs/ of the checkout)")
    p.add_argument("--grid", default="default", help="the grid's name (outputs/<grid>/; default: default)")
    p.add_argument("-o", "--output", default=None, help="write the Markdown here (default: print it)")
    p.add_argument("--note", default=None, help="a line on how the run went that the results cannot tell "
                   "(machine load, cells left out), printed under the header")
    p.add_argument("--json", action="store_true", help="print one JSON object (the findings per cell)")
    p.add_argument("--check-grid", default=None, metavar="GRID_FILE",
                   help="instead: check that each digital-twin cell's N is min(256, N*) of the memory bound")
    p.set_defaults(func=_run)


def hardware() -> str:
    """This machine in one line: CPU model, cores, memory, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} CPU core(s){mem}, {platform.system()} {platform.release()}"


def grid_N(cell, *, gpu_memory_gb: float, model_memory_gb: float, N_max: int = 256, kstar_update_interval: int = 16,
           offline_p_multiplier: int = 4, oom_tolerance: float = 0.01, seed: int = 0) -> int:
    """How the default grid chose each digital-twin cell's N: ``min(N_max, N*)``, N* the memory
    bound of Prop. 3 (``sweep.memory_bound_N``) at theta = k*/N with notebook 02's offline p
    (a seeded sample of ``offline_p_multiplier * kstar_update_interval`` outputs), iterated
    until N is stable (k* depends on N, N* on theta = k*/N). A source with few requests caps N at
    ``requests // REQUESTS_PER_SLOT`` (8): the memory validation needs refill cycles after the
    initial fill of N requests, and notebook 03 stops when there are none. ``pdlib findings --check-grid FILE``
    compares every such cell of a grid file with it."""
    from pdlib.experiments import sweep
    wl = cell.load_workload()
    timing = cell.engine_config()["timing"]
    mu_L, var_L = float(wl.input_lens.mean()), float(wl.input_lens.var())
    off = sweep.offline_p(wl, offline_p_multiplier * kstar_update_interval, seed)
    N_max = max(1, min(int(N_max), len(wl) // REQUESTS_PER_SLOT))
    N = N_max
    for _ in range(10):
        k = sweep.k_star_for(N, off["p"], timing, mu_L)["k_star"]
        mb = sweep.memory_bound_N(gpu_memory_gb=gpu_memory_gb, model_memory_gb=model_memory_gb,
                                  kv_cache_bytes=cell.kv_bytes_per_token(), theta=k / N, p=off["p"], mu_L=mu_L,
                                  var_L=var_L, oom_tolerance=oom_tolerance)
        nxt = max(1, min(int(N_max), int(mb["N_star_prop3"])))
        if nxt == N:
            break
        N = nxt
    return N


def check_grid_N(grid_file, N_max: int = 256, datasets=None) -> list[dict]:
    """Every digital-twin cell of ``grid_file`` that names ``gpu_memory_gb`` and ``model_memory_gb``
    (only those of ``datasets`` when given): its N against ``grid_N``."""
    from pdlib.params import load_cell, load_grid
    grid, rows = load_grid(grid_file), []
    for c in grid.cells:
        p = c.params
        if "gpu_memory_gb" not in p or "model_memory_gb" not in p or (datasets and p["dataset"] not in datasets):
            continue
        cell = load_cell(p["dataset"], p["model"], p["engine"], num_requests=p.get("num_requests"),
                         max_output_tokens=p.get("max_output_tokens"), seed=p.get("seed", 0))
        if cell.impl != "sim":
            continue
        want = grid_N(cell, gpu_memory_gb=float(p["gpu_memory_gb"]), model_memory_gb=float(p["model_memory_gb"]),
                      N_max=N_max, kstar_update_interval=int(p.get("kstar_update_interval", 16)),
                      offline_p_multiplier=int(p.get("offline_p_multiplier", 4)),
                      oom_tolerance=float(p.get("oom_tolerance", 0.01)), seed=int(p.get("seed", 0)))
        rows.append({"cell": c.name, "N": p.get("N"), "min_N_max_N_star": want, "ok": p.get("N") == want})
    return rows


def _run(args) -> int:
    from pdlib import paths
    from pdlib.report import findings, index
    if args.check_grid:
        path = paths.find_project_file(args.check_grid)
        if not path.is_file():
            raise CLIError(f"--check-grid {args.check_grid}: no such grid file")
        rows = check_grid_N(path)
        emit({"grid": str(path), "cells": rows, "all_ok": all(r["ok"] for r in rows)}, args.json)
        return 0 if all(r["ok"] for r in rows) else 1
    outputs = Path(args.outputs) if args.outputs else paths.outputs_dir()
    if not outputs.is_dir():
        raise CLIError(f"--outputs {outputs}: no such folder (run `pdlib run` first)")
    fs = index.findings(outputs, args.grid)
    if not fs:
        have = sorted(p.name for p in outputs.iterdir() if p.is_dir() and any(p.glob("**/cell.json")))
        raise CLIError(f"--grid {args.grid}: no cell results under {outputs}/{args.grid} "
                       f"(grids with results: {', '.join(have) or 'none'}; run `pdlib run` first)")
    info = findings.run_info(outputs, args.grid)
    out = (args.output or "-") + (" --note '...'" if args.note else "")
    header = (f"# Findings of grid `{args.grid}`\n\n"
              f"Results of `pdlib run --grid params/grid-{args.grid}.yaml` (`make report` for the default grid), "
              f"notebooks from {info['started'] or 'unknown'} to {info['finished'] or 'unknown'} (machine time), "
              f"{info['wall_seconds'] or 0:.0f} s wall (per-cell notebooks only: the grid's start-up and index "
              f"notebook not included), {info['notebooks']} notebooks, {info['notebook_seconds']:.0f} s of "
              "notebook time summed.  \n"
              f"Hardware: {hardware()}.  \n"
              f"Regenerate this file with `{COMMAND.format(outputs=outputs, grid=args.grid, out=out)}` "
              "(it is written from the results, not by hand). The same tables open `outputs/index.html`.\n"
              + (f"\nRun notes: {args.note}\n" if args.note else ""))
    text = findings.render_markdown(fs, header)
    if args.json:
        emit({"grid": args.grid, "cells": len(fs), "run": info, "output": args.output,
              "findings": [{k: v for k, v in f.items() if k != "links"} for f in fs]}, True)
    if args.output:
        from pdlib.records import atomic_write_text
        atomic_write_text(Path(args.output), text)
        if not args.json:
            print(f"wrote {args.output} ({len(fs)} cells of grid {args.grid})")
    elif not args.json:
        print(text, end="")
    return 0
