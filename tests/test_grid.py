"""The grid runner on small notebooks written by the test (real papermill, real kernel):
cartesian cells, a failing cell recorded while the grid goes on, resume skipping finished
notebooks, the HTML report without code cells, outputs/index.html."""
from __future__ import annotations

import json

import nbformat as nbf
import pytest
import yaml

from pdlib.grid import run_grid
from pdlib.params import GridError, load_grid
from pdlib.report.index import collect

pytestmark = pytest.mark.notebooks

PARAMS = 'dataset = "x"\nmodel = "m"\nengine = "e"\noutput_dir = "."\nscale = 1\ncap = None  # type: int|None\n'
BODY = '''
import json, pathlib
if dataset == "bad":
    raise RuntimeError(f"dataset {dataset!r} is broken on purpose")
res = {"kstar": {"k_star": 3 * scale, "k_hat": 4 * scale, "gap_pct": 1.5},
       "memory": {"errors_pct": {"X0": 2.0, "Xmax": 3.0, "kappa": 4.0}, "bound_valid_pct": 100.0}}
pathlib.Path(output_dir, f"{dataset}_results.json").write_text(json.dumps(res))
n_runs = pathlib.Path(output_dir, "runs.txt")
n_runs.write_text(str(int(n_runs.read_text()) + 1 if n_runs.exists() else 1))
print("result written")
'''


def _notebook(path, params, body):
    nb = nbf.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    p = nbf.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbf.v4.new_code_cell(body)]
    nbf.write(nb, path)


@pytest.fixture()
def grid_file(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "t1.ipynb", PARAMS, BODY)
    _notebook(nbdir / "t0.ipynb", 'output_dir = "."\nonly_in_once = 0\n', 'print("once", only_in_once)')
    g = {"name": "t", "notebooks": ["t1"], "once": ["t0"], "index_notebook": None, "notebooks_dir": "nbs",
         "defaults": {"scale": 2, "only_in_once": 1},
         "axes": [[{"dataset": "good"}, {"dataset": "bad"}], [{"model": "m"}], [{"engine": "e1"}, {"engine": "e2"}]]}
    f = tmp_path / "grid-t.yaml"
    f.write_text(yaml.safe_dump(g))
    return f


def test_load_grid_cartesian(grid_file):
    g = load_grid(grid_file)
    assert [c.name for c in g.cells] == ["good/m/e1", "good/m/e2", "bad/m/e1", "bad/m/e2"]
    assert all(c.params["scale"] == 2 for c in g.cells)


def test_load_grid_errors(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump({"name": "g", "axes": [[{"dataset": "a"}], [{"model": "m"}]]}))
    with pytest.raises(ValueError, match="has no engine"):
        load_grid(f)
    f.write_text(yaml.safe_dump({"name": "g", "axes": "nope"}))
    with pytest.raises(ValueError, match="axes"):
        load_grid(f)


def test_failing_cell_recorded_grid_goes_on_and_resume(grid_file, tmp_path):
    out = tmp_path / "outputs"
    run = run_grid(grid_file, only="*/e1", outputs=out, progress=False)
    # --only: only the e1 cells ran; the bad one failed, the good one finished
    assert [c for c, _ in run.ran] == ["good/m/e1", "_global"]
    assert [(c, nb) for c, nb, _ in run.failed] == [("bad/m/e1", "t1")]
    assert "broken on purpose" in run.failed[0][2]
    good, bad = out / "t/good/m/e1", out / "t/bad/m/e1"
    assert not (out / "t/good/m/e2").exists()
    assert json.loads((good / "good_results.json").read_text())["kstar"]["k_star"] == 6   # parameter passed
    assert (good / ".done/t1").is_file() and not (bad / ".done/t1").exists()
    st = json.loads((bad / "cell.json").read_text())["notebooks"]["t1"]
    assert st["status"] == "failed" and "RuntimeError" in st["error"]
    assert "only_in_once" not in st["parameters"]               # only declared parameters are passed
    once = json.loads((out / "t/_global/cell.json").read_text())["notebooks"]["t0"]
    assert once["parameters"]["only_in_once"] == 1
    # the report: HTML without code cells
    html = (good / "t1.html").read_text()
    assert "result written" in html and "n_runs.write_text" not in html
    # index lists both cells with headline numbers and the error
    index = (out / "index.html").read_text()
    assert "good/m/e1" in index and "bad/m/e1" in index and "broken on purpose" in index
    row = {r["cell"]: r for r in collect(out)}["good/m/e1"]
    assert row["headline"]["k_star"] == 6 and row["headline"]["gap_pct"] == 1.5
    # resume: the finished notebook is skipped, the failed one runs again (and fails again)
    run2 = run_grid(grid_file, only="*/e1", outputs=out, progress=False, resume=True)
    assert run2.skipped == [("good/m/e1", "t1"), ("_global", "t0")]
    assert [c for c, _, _ in run2.failed] == ["bad/m/e1"]
    assert (good / "runs.txt").read_text() == "1"


def test_only_matching_nothing_is_an_error(grid_file, tmp_path):
    with pytest.raises(ValueError, match="matches no cell"):
        run_grid(grid_file, only="nothing-like-this", outputs=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()                      # not even the once-notebooks ran


def test_every_grid_problem_listed_before_anything_runs(grid_file, tmp_path):
    g = yaml.safe_load(grid_file.read_text())
    g.update({"name": 7, "once": ["t0", "missing_nb"], "colour": "red"})
    g["defaults"].update({"scael": 3, "cap": 2.5})
    g["axes"][0].append({"dataset": "../../escape"})
    grid_file.write_text(yaml.safe_dump(g))
    with pytest.raises(GridError) as e:
        load_grid(grid_file)
    msg = str(e.value)
    assert "unknown key 'colour'" in msg and "name must be a string" in msg and "'../../escape'" in msg
    g["name"] = "t"
    del g["colour"]
    g["axes"][0].pop()
    grid_file.write_text(yaml.safe_dump(g))
    out = tmp_path / "o"
    with pytest.raises(GridError) as e:
        run_grid(grid_file, outputs=out, progress=False)
    probs = e.value.problems
    assert any("missing_nb" in p and "not found" in p for p in probs), probs
    assert any("'scael' is not a parameter of t1" in p for p in probs), probs
    assert any("'cap' must be int or None, got float 2.5" in p for p in probs), probs
    assert not out.exists()
    g["notebooks"] = []
    grid_file.write_text(yaml.safe_dump(g))
    with pytest.raises(GridError, match="'notebooks' is empty"):
        load_grid(grid_file)


def test_resume_reruns_a_notebook_whose_parameters_changed(grid_file, tmp_path):
    out = tmp_path / "outputs"
    run_grid(grid_file, only="good/m/e1", outputs=out, progress=False)
    g = yaml.safe_load(grid_file.read_text())
    g["defaults"]["scale"] = 5
    grid_file.write_text(yaml.safe_dump(g))
    run = run_grid(grid_file, only="good/m/e1", outputs=out, progress=False, resume=True)
    assert run.changed == [("good/m/e1", "t1")] and run.skipped == [("_global", "t0")]
    good = out / "t/good/m/e1"
    assert (good / "runs.txt").read_text() == "2"
    assert json.loads((good / "good_results.json").read_text())["kstar"]["k_star"] == 15


def test_cli_run_help():
    from pdlib.cli import build_parser
    args = build_parser().parse_args(["run", "--grid", "g.yaml", "--only", "alpaca", "--resume"])
    assert args.grid == "g.yaml" and args.only == "alpaca" and args.resume
