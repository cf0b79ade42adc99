"""Fuzzing the grid and parameter files: every generated grid YAML (and parameter YAML) is either
accepted or rejected with a ``ValueError``/``FileNotFoundError`` naming the file (a
``GridError`` lists every problem); never another exception, never a silently dropped key,
and no cell whose folder would leave ``--outputs``. Deterministic (``derandomize=True``).
"""
from __future__ import annotations

import collections
from pathlib import Path

import nbformat as nbf
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdlib.grid import cell_dir, check_grid
from pdlib.params import GRID_KEYS, GridError, load_cell, load_grid

COUNTS: collections.Counter = collections.Counter()
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PARAMS = ('dataset = "x"  # type: str\nmodel = "m"  # type: str\nengine = "e"  # type: str\n'
          'output_dir = "."  # type: str\nnum_requests = 8  # type: int\ncap = None  # type: int|None\n'
          'rate = 0.5  # type: float\nflag = False  # type: bool\nwarmup = "auto"  # type: str|int\n')


@pytest.fixture(scope="module")
def nbdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nbs")
    nb = nbf.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    p = nbf.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbf.v4.new_code_cell("print(dataset)")]
    nbf.write(nb, d / "t1.ipynb")
    return d


names = st.one_of(st.sampled_from(["a", "alpaca", "x-1", "..", ".", "../up", "a/b", "", " sp", "ok.v2", "/abs"]),
                  st.text(min_size=0, max_size=6), st.integers(-3, 3), st.none(), st.booleans(),
                  st.floats(allow_nan=True), st.lists(st.integers(), max_size=2))
values = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.none(), st.text(max_size=5), st.lists(st.integers(0, 9), max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
param_keys = st.sampled_from(["num_requests", "cap", "rate", "flag", "warmup", "num_request", "N", "seed", "capp"])
cell_dict = st.fixed_dictionaries({}, optional={"dataset": names, "model": names, "engine": names}).flatmap(
    lambda d: st.dictionaries(param_keys, values, max_size=2).map(lambda extra: {**d, **extra}))
grid_docs = st.fixed_dictionaries({}, optional={
    "name": names,
    "notebooks": st.one_of(st.just(["t1"]), st.just([]), st.lists(st.sampled_from(["t1", "nope", ""]), max_size=3),
                           values),
    "once": st.one_of(st.just([]), st.lists(st.sampled_from(["t1", "missing"]), max_size=2), values),
    "index_notebook": st.one_of(st.none(), st.just("t1"), st.just("gone"), values),
    "defaults": st.one_of(st.dictionaries(param_keys, values, max_size=3), values),
    "axes": st.one_of(st.lists(st.lists(cell_dict, max_size=3), max_size=3), values),
    "colour": values,
})


def _check(doc, path: Path, nbdir: Path, out: Path) -> str:
    doc = dict(doc)
    doc["notebooks_dir"] = str(nbdir)
    path.write_text(yaml.safe_dump(doc))
    try:
        g = load_grid(path)
        check_grid(g)
    except GridError as e:
        assert str(path) in str(e) and e.problems and all(isinstance(p, str) and p for p in e.problems)
        for k in doc:                         # an unknown top-level key is always named
            if k not in GRID_KEYS:
                assert any(repr(k) in p for p in e.problems), (k, e.problems)
        return "clear error"
    except (ValueError, FileNotFoundError) as e:
        assert str(path) in str(e) or "notebook" in str(e), e
        return "clear error"
    assert set(doc) <= GRID_KEYS
    for c in g.cells:                          # accepted: every cell stays inside --outputs
        assert cell_dir(out, g, c).resolve().is_relative_to(out.resolve())
        for k in c.params:
            assert k in ("dataset", "model", "engine") or k in PARAMS, f"key {k!r} accepted silently"
    return "accepted"


@FUZZ
@given(doc=grid_docs)
def test_generated_grid_files(doc, tmp_path, nbdir):
    COUNTS["grid yaml", _check(doc, tmp_path / "grid-f.yaml", nbdir, tmp_path / "out")] += 1


def _valid():
    return {"name": "g", "notebooks": ["t1"], "index_notebook": None, "defaults": {"num_requests": 8},
            "axes": [[{"dataset": "a"}, {"dataset": "b", "cap": 3}], [{"model": "m"}], [{"engine": "e"}]]}


_where = st.sampled_from(["name", "defaults", "axis0", "axis2", "top"])
good = st.one_of(st.tuples(st.just("num_requests"), st.integers(1, 10**6)), st.tuples(st.just("cap"), st.none()),
                 st.tuples(st.just("rate"), st.floats(0, 1)), st.tuples(st.just("flag"), st.booleans()),
                 st.tuples(st.just("warmup"), st.one_of(st.just("auto"), st.integers(0, 9))))
mutation = st.one_of(st.tuples(_where, param_keys | names.map(str), values),
                     st.tuples(st.sampled_from(["defaults", "axis0"]), good).map(lambda t: (t[0], *t[1])))


@FUZZ
@given(muts=st.lists(mutation, max_size=2))
def test_mutated_valid_grids(muts, tmp_path, nbdir):
    doc = _valid()
    for where, key, val in muts:
        if where == "name":
            doc["name"] = val
        elif where == "defaults":
            doc["defaults"][key] = val
        elif where == "axis0":
            doc["axes"][0][0][key] = val
        elif where == "axis2":
            doc["axes"][2].append({"engine": val} if isinstance(val, str) else {key: val})
        else:
            doc[key] = val
    COUNTS["grid yaml (mutated valid)", _check(doc, tmp_path / "grid-m.yaml", nbdir, tmp_path / "out")] += 1


RAW = ["", "[]", "7", "a: [", "{a: 1", "axes: !!python/object:os.system ls", "\t- x", "axes:\n- - {dataset: a}\n",
       "name: x\naxes: [[{dataset: a, model: m, engine: e}]]\naxes: []", "\x00\x01",
       "axes: [[{dataset: a, model: m, engine: e, num_requests: 2.5}]]", "name: ../../x\naxes: [[{dataset: a, model: m, engine: e}]]"]


@pytest.mark.parametrize("text", RAW)
def test_raw_grid_text(text, tmp_path, nbdir):
    p = tmp_path / "grid-raw.yaml"
    p.write_text(text + f"\nnotebooks_dir: {nbdir}\n" if text.startswith(("name", "axes")) else text)
    try:
        check_grid(load_grid(p))
        outcome = "accepted"
    except (ValueError, FileNotFoundError) as e:
        assert str(p) in str(e)
        outcome = "clear error"
    COUNTS["grid raw text", outcome] += 1


spec_docs = st.one_of(values, st.dictionaries(st.sampled_from(["spec", "config", "engine", "timing", "profile",
                                                                "name", "dtype", "weights", "hf_id"]), values,
                                              max_size=4))


@FUZZ
@given(kind=st.sampled_from(["dataset", "model", "engine"]), doc=spec_docs)
def test_generated_parameter_files(kind, doc, tmp_path):
    params = tmp_path / "params"
    for k in ("dataset", "model", "engine"):
        (params / f"{k}s").mkdir(parents=True, exist_ok=True)
    (params / "datasets" / "d.yaml").write_text("spec: {dataset: synthetic, num_requests: 4}\n")
    (params / "models" / "m.yaml").write_text("config: {model_type: qwen3}\n")
    (params / "engines" / "e.yaml").write_text("engine: sim\n")
    (params / f"{kind}s" / {"dataset": "d", "model": "m", "engine": "e"}[kind]).with_suffix(".yaml").write_text(
        yaml.safe_dump(doc))
    try:
        cell = load_cell("d", "m", "e", params_dir=params, data_dir=tmp_path)
        cell.workload_spec()
        outcome = "accepted"
    except (ValueError, FileNotFoundError) as e:
        assert "params" in str(e) or ".yaml" in str(e), e
        outcome = "clear error"
    COUNTS["parameter yaml", outcome] += 1


def test_zz_summary(capsys):
    classes = sorted({c for c, _ in COUNTS})
    with capsys.disabled():
        print("\nclass, tried, clear errors, accepted, tracebacks")
        for c in classes:
            ok, err = COUNTS[c, "accepted"], COUNTS[c, "clear error"]
            print(f"{c}, {ok + err}, {err}, {ok}, 0")
    assert sum(COUNTS.values()) >= 300 or not COUNTS   # run alone with -k, the sum is smaller
