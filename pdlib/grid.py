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

from pdlib.grid_spec import Grid, GridCell, load_grid
from pdlib.records import atomic_write_json, atomic_write_text
from pdlib.report.results import read_json

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
DEFAULT_GRID = REPO / "params" / "grid-default.yaml"
GLOBAL_DIR = "_global"


@dataclass
class GridRun:
    grid: str
    outputs: Path
    ran: list = field(default_factory=list)       # (cell, notebook) executed now
    skipped: list = field(default_factory=list)   # (cell, notebook) already done (resume)
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
    p = Path(notebooks_dir or NOTEBOOKS_DIR) / f"{name}.ipynb"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: notebook {name!r} not found")
    return p


def notebook_parameters(path: Path) -> set[str]:
    import papermill
    return set(papermill.inspect_notebook(str(path)))


def cell_dir(outputs: Path, grid: Grid, cell: GridCell) -> Path:
    p = cell.params
    return Path(outputs) / grid.name / str(p["dataset"]) / str(p["model"]) / str(p["engine"])


def export_html(ipynb: Path, html: Path) -> None:
    """The report: the executed notebook as HTML without code cells or prompts."""
    import nbformat
    from nbconvert import HTMLExporter
    nb = nbformat.read(str(ipynb), as_version=4)
    exp = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exp.from_notebook_node(nb)
    atomic_write_text(html, body)


def execute(name: str, out_dir: Path, params: dict, *, kernel: str, timeout: int | None = None,
            notebooks_dir=None) -> dict:
    """Run one notebook with papermill into ``out_dir``; returns its status record (never raises
    for a failure inside the notebook)."""
    import papermill
    src = notebook_path(name, notebooks_dir)
    declared = notebook_parameters(src)
    given = {k: v for k, v in params.items() if k in declared}
    given["output_dir"] = str(out_dir.resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    ipynb, html = out_dir / f"{name}.ipynb", out_dir / f"{name}.html"
    t0 = time.perf_counter()
    status = {"notebook": name, "status": "ok", "error": None, "ipynb": ipynb.name, "html": html.name,
              "parameters": given}
    try:
        papermill.execute_notebook(str(src), str(ipynb), parameters=given, kernel_name=kernel, cwd=str(REPO),
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


def _record(out_dir: Path, grid: Grid, cell_name: str, params: dict, status: dict) -> None:
    path = out_dir / "cell.json"
    rec = read_json(path, {}) or {}
    rec.update({"grid": grid.name, "cell": cell_name, "params": params})
    rec.setdefault("notebooks", {})[status["notebook"]] = status
    atomic_write_json(path, rec)


def _units(grid: Grid, outputs: Path, only: str | None):
    units = []
    for cell in grid.cells:
        if cell.matches(only):
            d = cell_dir(outputs, grid, cell)
            units += [(cell.name, d, cell.params, nb) for nb in grid.notebooks]
    gdir = Path(outputs) / grid.name / GLOBAL_DIR
    units += [(GLOBAL_DIR, gdir, dict(grid.defaults), nb) for nb in grid.once]
    return units


def run_grid(grid_file=None, only: str | None = None, resume: bool = False, outputs="outputs",
             progress: bool = True, timeout: int | None = None) -> GridRun:
    """Execute every notebook x cell of ``grid_file`` (default ``params/grid-default.yaml``).
    ``only`` filters cells (glob or substring of ``dataset/model/engine``, comma-separated);
    ``resume`` skips notebooks whose done-marker exists. Returns what ran, skipped and failed."""
    from tqdm.auto import tqdm

    from pdlib.report.index import write_index

    grid = load_grid(grid_file or DEFAULT_GRID)
    outputs = Path(outputs)
    units = _units(grid, outputs, only)
    if not units:
        raise ValueError(f"--only {only!r} matches no cell of {grid.path} "
                         f"(cells: {', '.join(c.name for c in grid.cells)})")
    kernel = kernel_name()
    os.environ["PDLIB_NONINTERACTIVE"] = "1"   # notebooks render static tables, not widgets
    run = GridRun(grid.name, outputs)
    t0 = time.perf_counter()
    bar = tqdm(total=len(units), desc=f"grid {grid.name}", unit="nb", disable=not progress)
    for cell_name, out_dir, params, nb in units:
        bar.set_postfix_str(f"{cell_name} {nb}")
        if resume and _marker(out_dir, nb).is_file():
            run.skipped.append((cell_name, nb))
            bar.update(1)
            continue
        params = {**params, "grid_name": grid.name}
        status = execute(nb, out_dir, params, kernel=kernel, timeout=timeout, notebooks_dir=grid.notebooks_dir)
        _record(out_dir, grid, cell_name, params, status)
        if status["status"] == "ok":
            atomic_write_json(_marker(out_dir, nb), {"notebook": nb, "seconds": status["seconds"],
                                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
            run.ran.append((cell_name, nb))
        else:
            run.failed.append((cell_name, nb, status["error"]))
            bar.write(f"FAILED {cell_name} {nb}: {status['error']}")
        write_index(outputs)
        bar.update(1)
    bar.close()
    if grid.index_notebook:
        gdir = outputs / grid.name
        st = execute(grid.index_notebook, gdir, {"grid_name": grid.name, "grid_dir": str(gdir.resolve())},
                     kernel=kernel, timeout=timeout, notebooks_dir=grid.notebooks_dir)
        if st["status"] != "ok":
            run.failed.append((grid.name, grid.index_notebook, st["error"]))
        atomic_write_json(gdir / "index_notebook.json", st)
    write_index(outputs)
    run.seconds = time.perf_counter() - t0
    return run
