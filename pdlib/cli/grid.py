"""``pdlib run``: execute the notebooks of a grid file with papermill and render the reports."""
from __future__ import annotations

from .output import CLIError, emit


def register(sub) -> None:
    p = sub.add_parser("run", help="run the notebook grid (papermill) and render reports into outputs/")
    p.add_argument("--grid", default=None, help="grid YAML (default: params/grid-default.yaml)")
    p.add_argument("--only", default=None, help="only cells whose dataset/model/engine matches (glob or substring)")
    p.add_argument("--resume", action="store_true", help="skip notebooks already finished (done-marker)")
    p.add_argument("--outputs", default=None,
                   help="output folder (default: $PDLIB_OUTPUTS_DIR, else outputs/ of the checkout, else ./outputs)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout in seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from pdlib import paths
    from pdlib.grid import run_grid
    grid = paths.find_project_file(args.grid) if args.grid else None
    if grid is not None and not grid.is_file():
        raise CLIError(f"grid file {args.grid} not found (looked here and in {paths.params_dir().parent})")
    outputs = Path(args.outputs) if args.outputs else paths.outputs_dir()
    run = run_grid(grid, only=args.only, resume=args.resume, outputs=outputs,
                   progress=not args.no_progress, timeout=args.timeout)
    emit({"grid": run.grid, "index": str(outputs / "index.html"), "ran": len(run.ran),
          "skipped": len(run.skipped), "rerun_params_changed": len(run.changed), "failed": len(run.failed), "seconds": round(run.seconds, 1),
          "failures": [f"{c} {nb}: {e}" for c, nb, e in run.failed]}, args.json)
    return 0 if run.ok else 1
