"""``pdlib run``: execute the notebooks of a grid file with papermill and render the reports."""
from __future__ import annotations

from . import oneliner
from .output import CLIError, emit, float_arg


def register(sub) -> None:
    p = sub.add_parser("run", help="run the notebook grid (papermill) and render reports into outputs/")
    p.add_argument("--grid", default=None, help="grid YAML (default: params/grid-default.yaml)")
    p.add_argument("--only", default=None, help="only cells whose dataset/model/engine matches (glob or substring)")
    p.add_argument("--resume", action="store_true", help="skip notebooks already finished (done-marker)")
    p.add_argument("--outputs", default=None,
                   help="output folder (default: $PDLIB_OUTPUTS_DIR, else outputs/ of the checkout, else ./outputs)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout in seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: cells on this machine (default; --jobs); ray: each cell one Ray task "
                        "(pip install '.[ray]', docs/ray.md)")
    p.add_argument("--jobs", default="auto",
                   help="--executor local: simulator cells run this many at a time (a positive integer or auto = "
                        "the CPUs this process may use; default auto); cells of clock-timed engines (native, vllm) "
                        "always run alone")
    p.add_argument("--address", default=None,
                   help="--executor ray: the cluster (auto, HOST:PORT or ray://HOST:PORT; default: a new local one)")
    p.add_argument("--gpus-per-cell", type=float_arg(0, 64, lo_open=True), default=1.0,
                   help="--executor ray: GPUs of a one-GPU cell, in (0, 64] (fractions share a GPU; "
                        "vLLM cells with tensor/pipeline parallelism ask for tp x pp)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    oneliner.add_arguments(p)   # --dataset/--model/--engine/-p/-f/--notebook: one cell, no YAML
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from pdlib import paths
    from pdlib.grid import run_grid
    grid = paths.find_project_file(args.grid) if args.grid else None
    if grid is not None and not grid.is_file():
        raise CLIError(f"grid file {args.grid} not found (looked here and in {paths.params_dir().parent})")
    outputs = Path(args.outputs) if args.outputs else paths.outputs_dir()
    if args.executor != "ray" and args.address is not None:
        raise CLIError("--address needs --executor ray")
    if oneliner.requested(args):
        grid = oneliner.write_grid(args, outputs)
    kw = {"only": args.only, "resume": args.resume, "outputs": outputs, "progress": not args.no_progress,
          "timeout": args.timeout}
    from pdlib.grid_pool import parse_jobs
    try:
        jobs = parse_jobs(args.jobs)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.executor == "ray" and args.jobs != "auto":
        raise CLIError("--jobs is for --executor local (Ray schedules its cells by the cluster's resources)")
    if args.executor == "ray":
        from pdlib.grid_ray import run_grid_ray
        run = run_grid_ray(grid, address=args.address, gpus_per_cell=args.gpus_per_cell, **kw)
    else:
        run = run_grid(grid, jobs=jobs, **kw)
    emit({"grid": run.grid, "index": str(outputs / "index.html"), "ran": len(run.ran),
          "skipped": len(run.skipped), "rerun_params_changed": len(run.changed), "failed": len(run.failed), "seconds": round(run.seconds, 1),
          "failures": [f"{c} {nb}: {e}" for c, nb, e in run.failed]}, args.json)
    return 0 if run.ok else 1
