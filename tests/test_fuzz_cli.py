"""Fuzzing the theory commands (``kstar``, ``memory``, ``simulate``, ``budget``) in-process through
``pdlib.cli.main``: every call either exits 0 with every printed number finite, or exits 2 with
one line on stderr that names an option -- never a traceback, never another exit status.

Three sources of calls: a table of hand-picked edge values substituted into every option of a
valid base call (the error must name that option), hypothesis-generated calls (derandomized;
small N and step counts so the runs are quick -- the bound checks are what is tested), and bad
model configs / latency files for ``budget``. ``--lengths FILE.csv`` (``kstar``, ``memory``,
``simulate``; commands tagged ``[lengths]``) takes one of a few files written by a fixture
(``@name`` in a value; see ``LENGTHS_FILES``), good and bad; ``data lengths -o`` gets edge paths.
``test_zz_summary`` prints the counts per class."""
from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdlib.cli import main

LENGTHS = {"--lengths": "@good"}
SIM_T = {"--alpha-p": "0.02", "--beta-p": "2e-5", "--alpha-d": "0.008", "--beta-d": "1e-4"}
BASE = {
    "kstar": {"--N": "64", "--p": "0.005", "--alpha-p": "0.05", "--alpha-d": "0.01", "--beta-d": "1e-4",
              "--beta-p": "2e-5", "--mean-input": "300"},
    "memory": {"--N": "64", "--k": "12", "--p": "0.0067", "--mean-input": "300", "--var-input": "2500",
               "--capacity-tokens": "110429", "--eps": "0.01"},
    "simulate": {"--N": "16", "--k": "4", "--p": "0.05", "--mean-input": "50", "--var-input": "100",
                 "--steps": "3000", "--seed": "0", "--warmup": "auto", **SIM_T},
    "simulate --dynamic": {"--N": "16", "--p": "0.05", "--mean-input": "50", "--steps": "1500",
                           "--p0": "0.02", "--ema-alpha": "0.05", "--update-interval": "8", "--p-estimator": "paper"},
    "kstar [lengths]": {"--N": "16", "--alpha-p": "0.05", "--alpha-d": "0.01", "--beta-d": "1e-4",
                        "--beta-p": "2e-5", **LENGTHS},
    "memory [lengths]": {"--N": "64", "--k": "12", "--capacity-tokens": "110429", "--eps": "0.01", **LENGTHS},
    "simulate [lengths]": {"--N": "16", "--k": "4", "--steps": "3000", "--seed": "0", **LENGTHS},
    "simulate --dynamic [lengths]": {"--N": "16", "--steps": "1500", "--p0": "0.02", "--update-interval": "8",
                                     "--p-estimator": "inverse_mean", **LENGTHS},
    "budget": {"--gpu": "rtx4080", "--model": "qwen3-1.7b", "--dtype": "fp16", "--kv-dtype": "fp8",
               "--mean-tokens": "500", "--p95-tokens": "1000", "--overhead-gb": "1", "--sla-s": "1",
               "--b-max": "128", "--latency": ("0.01", "0.0002", "0.3")},
}
EDGES = ["0", "-1", "nan", "inf", "-inf", "1e308", "1e-320", str(2**63), str(2**63 - 1), "abc", "", "1e30",
         "9" * 40, "1.5", "0.5", "1", "2", "-0", "1e-9", "1000000000000"]

STATS: dict[str, Counter] = defaultdict(Counter)

HEADER = "input_tokens,output_tokens\n"
_rng = np.random.default_rng(0)
LENGTHS_FILES = {   # @name -> the file's text (None: the file is not created)
    "good": HEADER + "".join(f"{a},{b}\n" for a, b in zip(_rng.integers(1, 400, 300),
                                                          _rng.geometric(0.05, 300).clip(1, 300))),
    "geo": HEADER + "".join(f"100,{b}\n" for b in _rng.geometric(0.1, 200)),       # constant inputs
    "ones": HEADER + "3,1\n4,1\n",
    "bad_header": "in,out\n3,4\n",
    "float": HEADER + "3,4.5\n",
    "huge": HEADER + "3,10000000000\n",
    "empty": "",
    "missing": None,
}
PATHS: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="module")
def _offline(tmp_path_factory):
    """A generated --model such as 'a/b' looks like a hub id: never go to the network for it.
    Also writes the ``@name`` lengths files."""
    d = tmp_path_factory.mktemp("lengths")
    for name, text in LENGTHS_FILES.items():
        PATHS["@" + name] = str(d / f"{name}.csv")
        if text is not None:
            (d / f"{name}.csv").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


NUM = re.compile(r"(?<![\w.])(nan|inf|infinity)(?![\w])", re.IGNORECASE)


def _klass(cmd: str) -> str:
    return cmd.split()[0] + (" --lengths" if "[lengths]" in cmd else "")


def _argv(cmd: str, opts: dict, as_json: bool = True) -> list[str]:
    argv = [w for w in cmd.split() if not w.startswith("[")]
    for k, v in opts.items():
        v = PATHS.get(v, v) if isinstance(v, str) else v
        argv += [k, *v] if isinstance(v, tuple) else [k, v]
    return argv + (["--json"] if as_json else [])


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def check_call(capsys, klass: str, argv: list[str], must_name: str | None = None) -> str:
    """Run ``pdlib ARGV`` in-process and check the contract; count the outcome under ``klass``."""
    capsys.readouterr()
    STATS[klass]["tried"] += 1
    try:
        rc = main(argv)
    except BaseException as e:                      # noqa: BLE001 -- anything escaping main is a traceback
        STATS[klass]["tracebacks"] += 1
        pytest.fail(f"pdlib {' '.join(map(repr, argv))} raised {type(e).__name__}: {e}")
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    if rc == 0:
        if "--json" in argv:
            lines = out.strip().splitlines()
            assert len(lines) == 1, out
            doc = json.loads(lines[0], parse_constant=lambda c: pytest.fail(f"{c} in the output of {argv}"))
            bad = [x for x in _numbers(doc) if not math.isfinite(x)]
        else:
            bad = NUM.findall(out)
        if bad:
            STATS[klass]["NaN exits"] += 1
            pytest.fail(f"pdlib {argv} exited 0 with non-finite numbers {bad}")
        STATS[klass]["ok runs"] += 1
        return "ok"
    assert rc == 2, f"pdlib {argv} exited {rc}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"pdlib {argv}: stderr is not one line:\n{err}"
    line = lines[0]
    assert line.startswith(f"pdlib {argv[0]}"), line
    if must_name:
        assert must_name in line, f"{line!r} does not name {must_name}"
    else:
        assert any(a in line for a in argv if a.startswith("--") and a != "--json"), line
    STATS[klass]["clear errors"] += 1
    return "error"


# --------------------------------------------------------------------------- the table of edge values

EDGE_CASES = [(cmd, opt, pos, v) for cmd, base in BASE.items() for opt, val in base.items()
              for pos in (range(3) if isinstance(val, tuple) else [None]) for v in EDGES]


@pytest.mark.parametrize("cmd", list(BASE))
def test_base_calls_run(capsys, cmd):
    assert check_call(capsys, f"{_klass(cmd)} (base)", _argv(cmd, BASE[cmd])) == "ok"
    assert check_call(capsys, f"{_klass(cmd)} (base)", _argv(cmd, BASE[cmd], as_json=False)) == "ok"


@pytest.mark.parametrize("cmd", list(BASE))
def test_edge_values_in_every_option(capsys, cmd):
    for c, opt, pos, v in EDGE_CASES:
        if c != cmd:
            continue
        opts = dict(BASE[cmd])
        if pos is None:
            opts[opt] = v
        else:
            vals = list(opts[opt])
            vals[pos] = v
            opts[opt] = tuple(vals)
        check_call(capsys, f"{_klass(cmd)} edge {opt}", _argv(cmd, opts), must_name=opt)


@pytest.mark.parametrize("argv,name", [
    (["kstar", "--N", "1000000000000", "--p", "0.01", "--alpha-p", "0.05", "--alpha-d", "0.01", "--beta-d", "1e-4"],
     "--N"),
    (["kstar", "--N", "9223372036854775808", "--p", "0.01", "--alpha-p", "0.05", "--alpha-d", "0.01",
      "--beta-d", "1e-4"], "--N"),
    (["kstar", "--N", "64", "--p", "0.01", "--alpha-p", "0.05", "--alpha-d", "0.01", "--beta-d", "1e-4",
      "--beta-p", "1e308"], "--beta-p"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "1e308"], "--mean-input"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "1e-320"], "--mean-input"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--steps", "1"], "--steps"),
    (["simulate", "--N", "16", "--p", "1", "--mean-input", "50", "--steps", "500"], "--p"),
    (["simulate", "--N", "16", "--p", "1e-9", "--mean-input", "50", "--steps", "500"], "--p"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--steps", "2000", "--warmup", "1000000000"],
     "--warmup"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--steps", "2000", "--warmup", "100000"],
     "--warmup"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--warmup", "abc"], "--warmup"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--seed", "-1"], "--seed"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--steps", "100000000"], "--steps"),
    (["memory", "--N", "64", "--k", "12", "--p", "1e-12", "--mean-input", "1e-300"], "--mean-input"),
    (["memory", "--N", "64", "--k", "64", "--p", "0.01", "--mean-input", "300"], "--k"),
    (["budget", "--latency", "0.01", "0.0002", "-5"], "--latency"),
    (["budget", "--b-max", "100000000"], "--b-max"),
    (["budget", "--overhead-gb", "100"], "--overhead-gb"),
    (["simulate", "--N", "16", "--p", "0.05", "--mean-input", "50", "--dynamic", "--p-estimator", "ema"],
     "--p-estimator"),
    (["simulate", "--N", "16", "--p", "0.05", "--lengths", "@good"], "--p"),
    (["memory", "--N", "64", "--k", "12", "--var-input", "5", "--lengths", "@good"], "--var-input"),
    (["kstar", "--N", "600", "--alpha-p", "0.05", "--alpha-d", "0.01", "--beta-d", "1e-4", "--lengths", "@good"],
     "--N"),
    (["memory", "--N", "5000", "--k", "12", "--lengths", "@good"], "--N"),
    (["memory", "--N", "64", "--k", "12", "--lengths", "@ones"], "--lengths"),
    (["memory", "--N", "64", "--k", "12", "--lengths", "@bad_header"], "--lengths"),
    (["kstar", "--N", "8", "--alpha-p", "0.05", "--alpha-d", "0.01", "--beta-d", "1e-4", "--lengths", "@huge"],
     "--lengths"),
    (["simulate", "--N", "8", "--lengths", "@float"], "--lengths"),
    (["simulate", "--N", "8", "--lengths", "@empty"], "--lengths"),
    (["simulate", "--N", "8", "--lengths", "@missing"], "--lengths"),
    (["memory", "--N", "64", "--k", "12"], "--p"),
])
def test_issue_cases(capsys, argv, name):
    """The probes of the issue: each one a one-line error naming the option."""
    argv = [PATHS.get(a, a) for a in argv]
    assert check_call(capsys, "issue probes", [*argv, "--json"], must_name=name) == "error"


# --------------------------------------------------------------------------- budget: files

def _qwen3_config() -> dict:
    return {"model_type": "qwen3", "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
            "head_dim": 128, "hidden_size": 2048, "intermediate_size": 6144, "vocab_size": 151936,
            "tie_word_embeddings": True, "torch_dtype": "bfloat16"}


CONFIG_PATCHES = [{}, {"num_attention_heads": 0}, {"num_attention_heads": 0, "head_dim": None},
                  {"num_hidden_layers": -1}, {"num_hidden_layers": 0}, {"num_hidden_layers": 1e30},
                  {"num_hidden_layers": "abc"}, {"num_hidden_layers": None}, {"num_hidden_layers": 2.5},
                  {"num_key_value_heads": 0}, {"num_key_value_heads": -8}, {"head_dim": 0}, {"head_dim": "x"},
                  {"hidden_size": 0}, {"hidden_size": 10**30}, {"vocab_size": 0}, {"vocab_size": -5},
                  {"intermediate_size": -1}, {"intermediate_size": [1]}, {"torch_dtype": "int8"},
                  {"torch_dtype": 5}, {"layer_types": 5}, {"layer_types": ["full_attention"] * 28},
                  {"model_type": "unknown-arch"}, {"num_hidden_layers": True}, {"vocab_size": float("nan")},
                  {"head_dim": float("inf")}, {"tie_word_embeddings": "yes"}]


def test_budget_model_configs(capsys, tmp_path):
    for i, patch in enumerate(CONFIG_PATCHES):
        c = {**_qwen3_config(), **patch}
        c = {k: v for k, v in c.items() if v is not None or k == "head_dim"}
        f = tmp_path / f"m{i}" / "config.json"
        f.parent.mkdir()
        f.write_text(json.dumps(c))
        for target in (f, f.parent):
            check_call(capsys, "budget --model config", ["budget", "--model", str(target), "--json"], "--model")
    text_cfg = tmp_path / "text_config.json"
    text_cfg.write_text(json.dumps({"model_type": "x", "text_config": "oops"}))
    bad = {"not-json.json": "{", "list.json": "[1, 2]", "binary.json": b"\xff\xfe\x00\x81",
           "empty.json": "", "nan.json": '{"num_hidden_layers": NaN}'}
    paths = [text_cfg, tmp_path, tmp_path / "missing.json", tmp_path / "nowhere" / "config.json"]
    for name, body in bad.items():
        p = tmp_path / name
        p.write_bytes(body) if isinstance(body, bytes) else p.write_text(body)
        paths.append(p)
    for p in paths:
        check_call(capsys, "budget --model config", ["budget", "--model", str(p), "--json"], "--model")


def test_budget_latency_files(capsys, tmp_path):
    docs = {"ok.json": {"latency_grid": {"fit": {"a": 0.01, "b_": 2e-4, "g": 0.3}}},
            "flat.json": {"a": 0.01, "b_": 2e-4, "g": 0.3}, "nan.json": '{"a": NaN, "b_": 1, "g": 0}',
            "inf.json": '{"a": 1, "b_": Infinity, "g": 0}', "str.json": {"a": "x", "b_": 1, "g": 0},
            "neg.json": {"a": -1, "b_": 1, "g": 0}, "g.json": {"a": 0, "b_": 1, "g": -3},
            "huge.json": {"a": 1e308, "b_": 1e308, "g": 1e308}, "bool.json": {"a": True, "b_": 1, "g": 0},
            "missing.json": {"a": 1}, "list.json": [1, 2, 3], "null.json": {"latency_grid": None},
            "bad.json": "{", "empty.json": ""}
    paths = [tmp_path, tmp_path / "absent.json", ""]
    for name, d in docs.items():
        p = tmp_path / name
        p.write_text(d if isinstance(d, str) else json.dumps(d))
        paths.append(p)
    for p in paths:
        check_call(capsys, "budget --latency-json", ["budget", "--latency-json", str(p), "--json"],
                   "--latency-json")
    check_call(capsys, "budget --latency-json",
               ["budget", "--latency-json", str(tmp_path / "ok.json"), "--latency", "1", "1", "1", "--json"],
               "--latency")


def test_data_lengths_output_paths(capsys, tmp_path, monkeypatch, data_dir):
    """``data lengths -o PATH``: edge paths either write the file or fail naming -o."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "fifo").mkdir()
    for target in [*EDGES, "folder", "folder/", "new/sub/x.csv", "x\0y", " ", ".", "fifo/../folder", "ok.csv"]:
        argv = ["data", "lengths", "--dataset", "burstgpt", "--data-dir", str(data_dir), "-o", target, "--json"]
        if check_call(capsys, "data lengths -o", argv, "-o") == "ok":
            assert Path(target).read_text().startswith("input_tokens,output_tokens\n")
    assert not [p for p in tmp_path.rglob(".*.tmp*")]          # no temp file left behind


# --------------------------------------------------------------------------- hypothesis

def _num(lo, hi):
    return st.floats(min_value=lo, max_value=hi).map(repr)


ANY = st.one_of(st.sampled_from(EDGES), st.floats().map(repr), st.integers(-2**70, 2**70).map(str),
                st.text(max_size=6))


TIMES = {"--alpha-p": _num(0, 0.1), "--beta-p": _num(0, 1e-3), "--alpha-d": _num(1e-4, 0.05),
         "--beta-d": _num(0, 1e-3)}
ESTIMATOR = st.sampled_from(["inverse_mean", "paper"])
LENGTH_FILE = st.sampled_from(["@good"] * 4 + ["@geo"] * 2 + ["@" + n for n in LENGTHS_FILES])
SPECS = [  # (command, required options, optional options): plausible values for each
    ("kstar", {"--N": st.integers(1, 300).map(str), "--p": _num(1e-6, 1), "--alpha-p": _num(0, 1),
               "--alpha-d": _num(1e-4, 0.1), "--beta-d": _num(0, 1e-3)},
     {"--beta-p": _num(0, 1e-3), "--mean-input": _num(0, 4000)}),
    ("memory", {"--N": st.integers(2, 300).map(str), "--k": st.integers(1, 299).map(str),
                "--p": _num(1e-6, 1), "--mean-input": _num(1e-3, 4000)},
     {"--var-input": _num(0, 1e6), "--capacity-tokens": _num(0, 1e7), "--eps": _num(1e-9, 0.5)}),
    ("simulate", {"--N": st.integers(2, 24).map(str), "--p": _num(0.02, 1), "--mean-input": _num(1, 500),
                  "--steps": st.integers(1, 2000).map(str)},
     {"--k": st.integers(1, 23).map(str), "--var-input": _num(0, 1e4), "--seed": st.integers(0, 9).map(str),
      "--warmup": st.one_of(st.just("auto"), st.integers(0, 50).map(str)), **TIMES}),
    ("simulate --dynamic", {"--N": st.integers(2, 24).map(str), "--p": _num(0.02, 1),
                            "--mean-input": _num(1, 500), "--steps": st.integers(1, 2000).map(str)},
     {"--p0": _num(0.02, 1), "--ema-alpha": _num(0.01, 1), "--update-interval": st.integers(1, 64).map(str),
      "--p-estimator": ESTIMATOR, **TIMES}),
    ("kstar [lengths]", {"--N": st.integers(1, 40).map(str), "--alpha-p": _num(0, 1), "--alpha-d": _num(1e-4, 0.1),
                         "--beta-d": _num(0, 1e-3), "--lengths": LENGTH_FILE},
     {"--beta-p": _num(0, 1e-3)}),
    ("memory [lengths]", {"--N": st.integers(2, 300).map(str), "--k": st.integers(1, 30).map(str),
                          "--lengths": LENGTH_FILE},
     {"--capacity-tokens": _num(0, 1e7), "--eps": _num(1e-9, 0.5)}),
    ("simulate [lengths]", {"--N": st.integers(2, 24).map(str), "--steps": st.integers(1, 2000).map(str),
                            "--lengths": LENGTH_FILE},
     {"--k": st.integers(1, 23).map(str), "--seed": st.integers(0, 9).map(str),
      "--warmup": st.one_of(st.just("auto"), st.integers(0, 50).map(str)), **TIMES}),
    ("simulate --dynamic [lengths]", {"--N": st.integers(2, 24).map(str), "--steps": st.integers(1, 2000).map(str),
                                      "--lengths": LENGTH_FILE},
     {"--p0": _num(0.02, 1), "--ema-alpha": _num(0.01, 1), "--update-interval": st.integers(1, 64).map(str),
      "--p-estimator": ESTIMATOR}),
    ("budget", {},
     {"--gpu": st.sampled_from(["rtx4080", "rtx4080-laptop", "h100", "a100-40gb", "rtx9999"]),
      "--model": st.sampled_from(["qwen3-1.7b", "qwen3-0.6b", "llama-2-7b", "qwen2.5-7b-instruct", "nope"]),
      "--dtype": st.sampled_from(["fp16", "bf16", "fp8", "fp32", "int4"]),
      "--kv-dtype": st.sampled_from(["fp16", "fp8", "bfloat16"]),
      "--mean-tokens": _num(1, 1e5), "--p95-tokens": _num(1, 1e5), "--overhead-gb": _num(0, 20),
      "--sla-s": _num(1e-3, 10), "--b-max": st.integers(1, 4096).map(str),
      "--latency": st.tuples(_num(0, 0.1), _num(0, 1e-3), _num(-1, 2))}),
]


@st.composite
def CALLS(draw):
    """One call: half of them with plausible values only, the rest with some options replaced
    by anything (an edge value, a random float, integer or text)."""
    cmd, required, optional = draw(st.sampled_from(SPECS))
    clean = draw(st.booleans())

    def value(k, strat):
        if clean or draw(st.integers(0, 2)):
            return draw(strat)
        v = draw(ANY)
        return (v, "0", "0") if k == "--latency" else v

    opts = {k: value(k, v) for k, v in required.items()}
    opts.update({k: value(k, v) for k, v in optional.items() if draw(st.booleans())})
    return cmd, opts, draw(st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(CALLS())
def test_generated_calls(capsys, call):
    cmd, opts, as_json = call
    check_call(capsys, f"{_klass(cmd)} generated", _argv(cmd, opts, as_json))


def test_zz_summary(capsys):
    """Counts per class (run the module alone to see the whole table)."""
    cols = ("tried", "clear errors", "ok runs", "tracebacks", "NaN exits")
    total = Counter()
    rows = []
    for klass in sorted(STATS):
        c = STATS[klass]
        total.update(c)
        rows.append(f"{klass:<34}" + "".join(f"{c[x]:>14}" for x in cols))
    with capsys.disabled():
        print("\n" + f"{'class':<34}" + "".join(f"{x:>14}" for x in cols))
        print("\n".join(rows))
        print(f"{'total':<34}" + "".join(f"{total[x]:>14}" for x in cols))
    assert total["tracebacks"] == 0 and total["NaN exits"] == 0
    assert total["tried"] == total["clear errors"] + total["ok runs"]
