"""The local executor with several cells at once (``pdlib.grid_pool``, ``pdlib run --jobs``), on
small notebooks written by the test (real papermill, real kernels, real worker processes).

Concurrency is shown by a barrier, not by timing: each pooled notebook writes its marker and
waits for the other cell's marker, so the grid can only finish with both markers seen when the
two cells really ran at the same time (one at a time, the first would time out and fail). A
clock-timed cell (engine ``native``) must run alone: it checks that no pooled cell has started,
and the pooled cells check that it had finished."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from test_grid import _notebook  # tests/ is on sys.path under pytest: the grid tests' notebook writer

from pdlib.grid import run_grid
from pdlib.grid_pool import auto_jobs, exclusive, parse_jobs

pytestmark = pytest.mark.notebooks

PARAMS = 'dataset = "x"\nmodel = "m"\nengine = "e"\noutput_dir = "."\nbarrier = "."\n'
BODY = '''
import json, os, pathlib, time
b = pathlib.Path(barrier)
if engine == "native":            # clock-timed: must run alone, before the pooled cells
    others = sorted(p.name for p in b.glob("*.started"))
    assert not others, f"pooled cells started beside the exclusive one: {others}"
    (b / "native.done").write_text("1")
    seen = []
else:
    assert (b / "native.done").exists(), "a pooled cell started before the exclusive cell finished"
    (b / f"{dataset}.started").write_text(str(os.getpid()))
    other = {"a": "b", "b": "a"}[dataset]
    deadline = time.monotonic() + 120
    while not (b / f"{other}.started").exists():
        assert time.monotonic() < deadline, f"cell {dataset}: cell {other} never ran beside it"
        time.sleep(0.05)
    seen = [other]
pathlib.Path(output_dir, "seen.json").write_text(json.dumps({"seen": seen, "pid": os.getpid()}))
'''


@pytest.fixture()
def pool_grid(tmp_path):
    (tmp_path / "nbs").mkdir()
    _notebook(tmp_path / "nbs" / "t1.ipynb", PARAMS, BODY)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    g = {"name": "pool", "notebooks": ["t1"], "once": [], "index_notebook": None, "notebooks_dir": "nbs",
         "defaults": {"barrier": str(barrier)},
         "axes": [[{"dataset": "n", "engine": "native"}, {"dataset": "a", "engine": "e1"},
                   {"dataset": "b", "engine": "e2"}], [{"model": "m"}]]}
    f = tmp_path / "grid-pool.yaml"
    f.write_text(yaml.safe_dump(g))
    return f


def test_exclusive_reads_the_engine_yaml():
    assert exclusive({"engine": "native"}) and exclusive({"engine": "vllm"})
    assert not exclusive({"engine": "sim"}) and not exclusive({"engine": "sim-h200"})
    assert not exclusive({"engine": "no-such-engine"})      # its notebook fails and is recorded


def test_parse_jobs():
    assert parse_jobs("auto") == auto_jobs() >= 1
    assert parse_jobs("3") == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="--jobs must be a positive integer or 'auto'"):
            parse_jobs(bad)


def test_pool_runs_cells_together_and_the_timed_cell_alone(pool_grid, tmp_path):
    out = tmp_path / "out"
    run = run_grid(pool_grid, outputs=out, progress=False, jobs=2)
    assert run.ok, run.failed
    assert sorted(c for c, _ in run.ran) == ["a/m/e1", "b/m/e2", "n/m/native"]
    seen = {d: json.loads((out / "pool" / d / "m" / e / "seen.json").read_text())
            for d, e in (("a", "e1"), ("b", "e2"), ("n", "native"))}
    assert seen["a"]["seen"] == ["b"] and seen["b"]["seen"] == ["a"]
    assert seen["a"]["pid"] != seen["b"]["pid"]            # two kernels at once
    for d, e in (("a", "e1"), ("b", "e2"), ("n", "native")):
        cell = out / "pool" / d / "m" / e
        assert (cell / ".done" / "t1").is_file()
        assert json.loads((cell / "cell.json").read_text())["notebooks"]["t1"]["status"] == "ok"
    assert (out / "index.html").is_file()
    again = run_grid(pool_grid, outputs=out, progress=False, jobs=2, resume=True)
    assert not again.ran and len(again.skipped) == 3


def test_one_job_runs_one_at_a_time_and_the_barrier_fails(pool_grid, tmp_path):
    """The control: with --jobs 1 (the grid's order) cell a waits for b, which has not started,
    so the barrier fails it (the test above could not pass without real concurrency); b then
    finds a's marker. The wait is shortened for this run."""
    nb = tmp_path / "nbs" / "t1.ipynb"
    nb.write_text(nb.read_text().replace("time.monotonic() + 120", "time.monotonic() + 3"))
    run = run_grid(pool_grid, outputs=tmp_path / "out1", progress=False, jobs=1)
    failed = {c: e for c, _, e in run.failed}
    assert set(failed) == {"a/m/e1"}
    assert "cell b never ran beside it" in failed["a/m/e1"]


def test_cli_jobs_errors(tmp_path):
    for args, msg in ((["--jobs", "0"], "--jobs must be a positive integer or 'auto', got '0'"),
                      (["--executor", "ray", "--jobs", "2"], "--jobs is for --executor local")):
        p = subprocess.run([sys.executable, "-m", "pdlib", "run", "--outputs", str(tmp_path), *args],
                           check=False, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert msg in p.stderr
