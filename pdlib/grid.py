"""The grid runner: papermill executes every notebook for every cell of a grid file.

Per cell, under ``outputs/<grid>/<dataset>/<model>/<engine>/``: the executed ``.ipynb``, an
HTML report without code cells, the notebooks' JSON results and figures, and
``cell.json`` (status of each notebook, its error when it failed, seconds). A notebook's
done-marker (``.done/<notebook>``) is written last and atomically, so ``resume=True``
skips exactly what finished. A failing notebook is recorded and the grid goes on.
``outputs/index.html`` is rewritten after every cell.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pdlib import paths
from pdlib.grid_pool import outcome
from pdlib.params import REQUIRED, Grid, GridCell, GridError, load_grid
from pdlib.records import atomic_write_json, atomic_write_text
from pdlib.report.results import read_json

GLOBAL_DIR = "_global"


def default_grid() -> Path:
    return paths.params_dir() / "grid-default.yaml"


@dataclass
class GridRun:
    grid: str
    outputs: Path
    ran: list = field(default_factory=list)       # (cell, notebook) executed now
    skipped: list = field(default_factory=list)   # (cell, notebook) already done (resume)
    changed: list = field(default_factory=list)   # (cell, notebook) rerun: parameters changed since done
    failed: list = field(default_factory=list)    # (cell, notebook, error)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def kernel_name() -> str:
    """A Jupyter kernel that runs *this* interpreter: ``python3`` when its spec launches
    ``python``/this executable (jupyter_client maps ``python`` to sys.executable), else a
    ``pdlib`` spec installed into sys.prefix on first use (no manual step)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    ksm = KernelSpecManager()
    ok_argv0 = {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}", sys.executable}
    try:
        spec = ksm.get_kernel_spec("python3")
        if spec.argv and (spec.argv[0] in ok_argv0 or os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable)):
            return "python3"
    except NoSuchKernel:
        pass
    try:
        spec = ksm.get_kernel_spec("pdlib")
        if spec.argv and os.path.realpath(spec.argv[0]) == os.path.realpath(sys.executable):
            return "pdlib"
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install
    install(kernel_name="pdlib", display_name="Python 3 (pdlib)", prefix=sys.prefix)
    return "pdlib"


def notebook_path(name: str, notebooks_dir=None) -> Path:
    p = Path(notebooks_dir or paths.notebooks_dir()) / f"{name}.ipynb"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: notebook {name!r} not found")
    return p


def notebook_parameters(path: Path) -> dict:
    """The notebook's ``parameters`` cell: name -> papermill's record (default, inferred type)."""
    import papermill
    return dict(papermill.inspect_notebook(str(path)))


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
          "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,)}


def type_problem(value, decl: dict) -> str | None:
    """Why ``value`` does not fit a notebook parameter (its annotation, e.g. ``int | None``, else
    the type of its default); None when it fits or the parameter says nothing about its type."""
    import ast
    ann = decl.get("inferred_type_name")
    if ann and ann != "None":
        names = [t.strip().split("[")[0].removeprefix("typing.") for t in ann.replace("Optional[", "None|").split("|")]
    else:
        try:
            default = ast.literal_eval(decl.get("default", "None"))
        except (ValueError, SyntaxError):
            return None
        if default is None:
            return None
        names = [type(default).__name__]
    allowed = [t for n in names for t in _TYPES.get(n.rstrip("]"), ())]
    if not allowed:
        return None
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    else:
        ok = isinstance(value, tuple(allowed))
    return None if ok else f"must be {' or '.join(names)}, got {type(value).__name__} {value!r}"


def check_grid(grid: Grid) -> dict:
    """Every problem of a grid against its notebooks at once (missing notebooks, parameters no
    notebook declares, values of the wrong type); returns ``{notebook: declared parameters}``."""
    problems, declared = [], {}
    wanted = [*grid.notebooks, *grid.once, *([grid.index_notebook] if grid.index_notebook else [])]
    for nb in dict.fromkeys(wanted):
        try:
            declared[nb] = notebook_parameters(notebook_path(nb, grid.notebooks_dir))
        except FileNotFoundError as e:
            problems.append(str(e))
        except Exception as e:  # noqa: BLE001 - a notebook papermill cannot read is a grid problem
            problems.append(f"notebook {nb!r}: cannot read its parameters ({_error_text(e)})")
    groups = [(c.name, c.params, [nb for nb in grid.notebooks if nb in declared]) for c in grid.cells]
    groups.append(("defaults (once notebooks)", dict(grid.defaults), [nb for nb in grid.once if nb in declared]))
    seen: dict[str, list[str]] = {}
    for where, params, nbs in groups:
        if not nbs:
            continue
        for k, v in params.items():
            if k in REQUIRED or k == "grid_name":
                continue
            decl = [declared[nb][k] for nb in nbs if k in declared[nb]]
            if not decl and k in grid.defaults and any(k in declared[nb] for nb in declared):
                continue            # a default meant for the other kind of notebook (per cell / once)
            if not decl:
                known = sorted({n for nb in nbs for n in declared[nb]} - {"output_dir"})
                msg = f"parameter {k!r} is not a parameter of {', '.join(nbs)} (known: {', '.join(known)})"
            else:
                why = next((w for d in decl if (w := type_problem(v, d))), None)
                msg = f"parameter {k!r} {why}" if why else None
            if msg:
                seen.setdefault(msg, []).append(where)
    for msg, where in seen.items():
        problems.append(f"{msg} (in {where[0]}{f' and {len(where) - 1} more' if len(where) > 1 else ''})")
    if problems:
        raise GridError(grid.path, problems)
    return declared


def params_hash(given: dict) -> str:
    """The done-marker's key: a notebook reruns on ``--resume`` when this changes."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode()).hexdigest()[:16]


def given_parameters(params: dict, declared: dict, out_dir: Path) -> dict:
    given = {k: v for k, v in params.items() if k in declared}
    given["output_dir"] = str(Path(out_dir).resolve())
    return given


def cell_dir(outputs: Path, grid: Grid, cell: GridCell) -> Path:
    p = cell.params
    return Path(outputs) / grid.name / str(p["dataset"]) / cell.model_folder / str(p["engine"])


def export_html(ipynb: Path, html: Path) -> None:
    """The report: the executed notebook as HTML without code cells or prompts; engine logs
    (stderr, log records on stdout) go to ``<notebook>.log`` beside it, linked from the report
    (``pdlib.report.logs.split_logs``)."""
    import nbformat
    from nbconvert import HTMLExporter

    from pdlib.report.logs import split_logs
    nb = nbformat.read(str(ipynb), as_version=4)
    split_logs(nb, Path(html).with_suffix(".log"))
    exp = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exp.from_notebook_node(nb)
    atomic_write_text(html, body)


def execute(name: str, out_dir: Path, params: dict, *, kernel: str, timeout: int | None = None,
            notebooks_dir=None, declared: dict | None = None) -> dict:
    """Run one notebook with papermill into ``out_dir``; returns its status record (never raises
    for a failure of the notebook, missing or failing)."""
    import papermill
    ipynb, html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    t0 = time.perf_counter()
    status = {"notebook": name, "status": "ok", "error": None, "ipynb": ipynb.name, "html": html.name,
              "parameters": None}
    try:
        src = notebook_path(name, notebooks_dir)
        given = given_parameters(params, declared if declared is not None else notebook_parameters(src), out_dir)
        status["parameters"], status["params_hash"] = given, params_hash(given)
        out_dir.mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(str(src), str(ipynb), parameters=given, kernel_name=kernel, cwd=str(paths.project_dir()),
                                   progress_bar=False, log_output=False, execution_timeout=timeout)
    except Exception as e:  # noqa: BLE001 - recorded, the grid goes on
        status["status"] = "failed"
        status["error"] = _error_text(e)
    status["seconds"] = round(time.perf_counter() - t0, 2)
    if ipynb.is_file():
        try:
            export_html(ipynb, html)
        except Exception as e:  # noqa: BLE001
            status["html"] = None
            status["html_error"] = _error_text(e)
    else:
        status["html"] = status["ipynb"] = None
    return status


def _error_text(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _marker(out_dir: Path, name: str) -> Path:
    return out_dir / ".done" / name


def _record(out_dir: Path, grid_name: str, cell_name: str, params: dict, status: dict) -> None:
    path = out_dir / "cell.json"
    rec = read_json(path, {}) or {}
    rec.update({"grid": grid_name, "cell": cell_name, "params": params})
    rec.setdefault("notebooks", {})[status["notebook"]] = status
    atomic_write_json(path, rec)


def _done(marker: dict | None, given: dict) -> str:
    """``"done"`` (a done-marker with these parameters), ``"changed"`` (with others) or ``""``
    (no marker); ``marker`` as read from ``_marker(out_dir, notebook)``."""
    if not marker:
        return ""
    return "done" if marker.get("params_hash") == params_hash(given) else "changed"


def _units(grid: Grid, outputs: Path, only: str | None):
    units, root = [], Path(outputs).resolve()
    cells = [c for c in grid.cells if c.matches(only)]
    if not cells:
        raise ValueError(f"--only {only!r} matches no cell of {grid.path} "
                         f"(cells: {', '.join(c.name for c in grid.cells)})")
    for cell in cells:
        d = cell_dir(outputs, grid, cell)
        if not d.resolve().is_relative_to(root):
            raise ValueError(f"{grid.path}: cell {cell.name} would write outside --outputs ({d})")
        units += [(cell.name, d, cell.params, nb) for nb in grid.notebooks]
    gdir = Path(outputs) / grid.name / GLOBAL_DIR
    units += [(GLOBAL_DIR, gdir, dict(grid.defaults), nb) for nb in grid.once]
    return units


def cells_of(units) -> list[tuple]:
    """``_units`` grouped by cell, order kept: ``(cell_name, out_dir, params, [notebooks])``."""
    cells: dict = {}
    for cell_name, out_dir, params, nb in units:
        cells.setdefault(cell_name, (cell_name, out_dir, params, []))[3].append(nb)
    return list(cells.values())


def run_cell(cell_name: str, out_dir: Path, params: dict, notebooks: list, *, grid_name: str, declared: dict,
             kernel: str, timeout: int | None = None, notebooks_dir=None, resume: bool = False,
             run_id: str | None = None, notify=None) -> list[dict]:
    """One cell's notebooks, in order, in this process: the unit of work of every executor (the
    local loop calls it per cell; ``pdlib.grid_ray`` calls it inside one Ray task).

    ``resume`` skips a notebook whose done-marker holds the same parameters. ``run_id`` is
    written into each new done-marker, and a marker with that same ``run_id`` is always skipped
    (a retried task does not redo what its lost attempt finished). ``notify(event, cell_name,
    notebook, outcome)`` is called with ``"start"``, ``"changed"`` (rerun: parameters changed)
    and ``"done"``. Returns one outcome per notebook: ``{"notebook", "outcome": "ok" | "failed" |
    "skipped", "changed", "error", "earlier_attempt"}``."""
    outcomes, params, notify = [], {**params, "grid_name": grid_name}, notify or (lambda *_: None)
    for nb in notebooks:
        out = outcome(nb)
        notify("start", cell_name, nb, out)
        given = given_parameters(params, declared[nb], out_dir)
        marker = read_json(_marker(out_dir, nb), None) if (resume or run_id) else None
        state = _done(marker, given)
        if state == "done" and run_id and marker.get("run_id") == run_id:
            out.update(outcome="ok", earlier_attempt=True)
        elif state == "done" and resume:
            pass
        else:
            if state == "changed" and resume:
                out["changed"] = True
                notify("changed", cell_name, nb, out)
            status = execute(nb, out_dir, params, kernel=kernel, timeout=timeout, notebooks_dir=notebooks_dir,
                             declared=declared[nb])
            _record(out_dir, grid_name, cell_name, params, status)
            if status["status"] == "ok":
                mark = {"notebook": nb, "seconds": status["seconds"], "params_hash": status["params_hash"],
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
                atomic_write_json(_marker(out_dir, nb), {**mark, **({"run_id": run_id} if run_id else {})})
                out["outcome"] = "ok"
            else:
                out.update(outcome="failed", error=status["error"])
        outcomes.append(out)
        notify("done", cell_name, nb, out)
    return outcomes


def tally(run: GridRun, cell_name: str, outcomes: list[dict]) -> None:
    """Add one cell's outcomes (``run_cell``) to ``run``."""
    for o in outcomes:
        if o["changed"]:
            run.changed.append((cell_name, o["notebook"]))
        if o["outcome"] == "skipped":
            run.skipped.append((cell_name, o["notebook"]))
        elif o["outcome"] == "ok":
            run.ran.append((cell_name, o["notebook"]))
        else:
            run.failed.append((cell_name, o["notebook"], o["error"]))


@dataclass
class Plan:
    """A checked grid ready to run: its cells (``cells_of``), the notebooks' declared parameters."""
    grid: Grid
    outputs: Path
    cells: list
    declared: dict
    n_notebooks: int


def plan_grid(grid_file=None, only: str | None = None, outputs=None) -> Plan:
    """Load and check ``grid_file`` (default ``params/grid-default.yaml``) before anything runs."""
    grid = load_grid(paths.find_project_file(grid_file) if grid_file else default_grid())
    outputs = Path(outputs) if outputs else paths.outputs_dir()
    units = _units(grid, outputs, only)
    declared = check_grid(grid)
    return Plan(grid, outputs, cells_of(units), declared, len(units))


def finish_grid(plan: Plan, run: GridRun, kernel: str, timeout: int | None = None, t0: float | None = None) -> GridRun:
    """After every cell: the index notebook (once), then ``outputs/index.html``."""
    from pdlib.report.index import write_index
    grid, outputs = plan.grid, plan.outputs
    if grid.index_notebook:
        gdir = outputs / grid.name
        st = execute(grid.index_notebook, gdir, {"grid_name": grid.name, "grid_dir": str(gdir.resolve())},
                     kernel=kernel, timeout=timeout, notebooks_dir=grid.notebooks_dir,
                     declared=plan.declared[grid.index_notebook])
        if st["status"] != "ok":
            run.failed.append((grid.name, grid.index_notebook, st["error"]))
        atomic_write_json(gdir / "index_notebook.json", st)
    write_index(outputs)
    if t0 is not None:
        run.seconds = time.perf_counter() - t0
    return run


def run_grid(grid_file=None, only: str | None = None, resume: bool = False, outputs=None,
             progress: bool = True, timeout: int | None = None, jobs: int = 1) -> GridRun:
    """Execute every notebook x cell of ``grid_file`` (default ``params/grid-default.yaml``) on
    this machine: one cell after another, or (``jobs`` > 1) clock-timed cells alone and the
    simulator's cells ``jobs`` at a time (``pdlib.grid_pool``; ``pdlib.grid_ray``: on Ray).
    ``only`` filters cells (glob or substring of ``dataset/model/engine``, comma-separated);
    ``resume`` skips notebooks whose done-marker exists. Returns what ran, skipped and failed."""
    from tqdm.auto import tqdm

    from pdlib.report.index import write_index

    plan = plan_grid(grid_file, only, outputs)
    grid, outputs = plan.grid, plan.outputs
    kernel = kernel_name()
    os.environ["PDLIB_NONINTERACTIVE"] = "1"   # notebooks render static tables, not widgets
    run = GridRun(grid.name, outputs)
    t0 = time.perf_counter()
    bar = tqdm(total=plan.n_notebooks, desc=f"grid {grid.name}", unit="nb", disable=not progress)

    def notify(event, cell_name, nb, out):
        if event == "start":
            bar.set_postfix_str(f"{cell_name} {nb}")
        elif event == "changed":
            bar.write(f"rerun {cell_name} {nb}: its parameters changed since it finished")
        else:
            if out["outcome"] == "failed":
                bar.write(f"FAILED {cell_name} {nb}: {out['error']}")
            if out["outcome"] != "skipped":
                write_index(outputs)
            bar.update(1)

    def cell_over(cell_name, outcomes, pooled):
        tally(run, cell_name, outcomes)
        for out in outcomes if pooled else ():   # a pooled cell reports its notebooks when it is over
            notify("done", cell_name, out["notebook"], out)

    from pdlib.grid_pool import run_cells
    run_cells(plan.cells, jobs, run_cell, on_start=lambda name: bar.set_postfix_str(f"{name} (pool of {jobs})"),
              on_cell=cell_over, grid_name=grid.name, declared=plan.declared, kernel=kernel, timeout=timeout,
              notebooks_dir=grid.notebooks_dir, resume=resume, notify=notify)
    bar.close()
    return finish_grid(plan, run, kernel, timeout, t0)
