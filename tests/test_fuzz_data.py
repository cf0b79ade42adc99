"""Fuzz suite for the workload loaders: hypothesis-generated records, rows, cells, bytes, spec
fields, cache entries and tokenizer folders, written to files in a temporary folder.

Every case must end in one of three ways:
* a clear error: a ``ValueError`` (``DataError`` included) on one line naming the file or field;
* a workload where every record is accounted for: records in = requests kept + records counted as
  skipped (+ rows outside the requested split), every length in 1..10^9;
* for cache faults: the same workload as a fresh load (the entry rebuilt or bypassed, warned).
Never another exception type, never a silent drop. ``test_zz_summary`` prints the tally per class
(run with ``-s`` to see it) and checks that at least 250 cases ran.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdlib.cli import main
from pdlib.data import DatasetSpec, load_tokenizer, load_workload
from pdlib.data.cache import CacheWarning
from pdlib.workload import MAX_TOKENS

pytestmark = pytest.mark.filterwarnings("ignore::pdlib.data.cache.CacheWarning")


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


COLUMNS = ("tried", "clear errors", "counted skips", "clean loads", "unclear errors", "tracebacks", "silent drops")
TALLY: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))


def case(cls: str, load, *, records_in=None, names=()):
    """Run one case and tally it. ``records_in``: the number of records the input holds (None: trust
    ``meta["records"]``, for inputs that are not even parseable by the test); ``names``: what a
    clear error must mention (the file, or a spec field)."""
    t = TALLY[cls]
    t["tried"] += 1
    try:
        wl = load()
    except ValueError as e:                      # DataError, or a spec field out of range
        msg = str(e)
        if "\n" in msg or (names and not any(str(n) in msg for n in names)):
            t["unclear errors"] += 1
            raise AssertionError(f"unclear error {msg!r}: should be one line naming one of {names}") from e
        t["clear errors"] += 1
        return None
    except Exception:
        t["tracebacks"] += 1
        raise
    assert_accounted(cls, wl, records_in)
    return wl


def assert_accounted(cls, wl, records_in):
    t = TALLY[cls]
    n_in = wl.meta.get("records") if records_in is None else records_in
    kept, skipped = len(wl.requests), len(wl.skipped)
    outside, unused = wl.meta.get("outside_split", 0), wl.meta.get("unused", 0)    # unused: after num_requests
    if not kept or (n_in is not None and n_in != kept + skipped + outside + unused):
        t["silent drops"] += 1
        raise AssertionError(f"{n_in} records in, {kept} kept + {skipped} skipped + {outside} outside split + "
                             f"{unused} unused")
    for r in wl.requests:
        assert 1 <= r.input_len <= MAX_TOKENS and 1 <= r.output_len <= MAX_TOKENS, r
        assert r.prompt_ids is None or len(r.prompt_ids) == r.input_len
    t["counted skips" if skipped else "clean loads"] += 1


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")             # no network: hub fallbacks fail at once, clearly
    mp.setenv("PDLIB_CACHE_DIR", str(tmp_path_factory.mktemp("fuzz-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_tokenizer(str(qwen3_dir))


# ---- values that break loaders ---------------------------------------------------------------
SURROGATE = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
TEXT = st.text(max_size=20) | SURROGATE.map(lambda s: "ab" + s) | st.sampled_from(["", " ", "\x00", "\u2028", "ok"])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | TEXT,
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                    max_leaves=8)
VAL = TEXT | JSON


def rows_for(dataset):
    if dataset == "alpaca":
        return st.fixed_dictionaries({}, optional={"instruction": VAL, "input": VAL, "output": VAL})
    if dataset == "sharegpt":
        turn = st.fixed_dictionaries({}, optional={"from": st.sampled_from(["human", "gpt", "user"]) | VAL, "value": VAL})
        return st.fixed_dictionaries({}, optional={"id": VAL, "conversations": st.lists(turn, max_size=3) | VAL})
    if dataset == "lmsys":
        turn = st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "assistant"]) | VAL, "content": VAL})
        return st.fixed_dictionaries({}, optional={"conversation_id": VAL, "conversation": st.lists(turn, max_size=3)})
    if dataset == "processbench":
        return st.fixed_dictionaries({}, optional={"id": VAL, "problem": VAL, "steps": st.lists(VAL, max_size=3) | VAL})
    if dataset == "longbench":
        return st.fixed_dictionaries({"length": st.sampled_from(["short", "long"])}, optional={
            **{k: VAL for k in ("question", "choice_A", "choice_B", "choice_C", "choice_D", "context", "_id")},
            "answer": st.sampled_from(["A", "E", ""]) | VAL})
    return st.fixed_dictionaries({}, optional={"context": VAL, "input": VAL,             # longbench_v1
                                               "answers": st.lists(VAL, max_size=2) | VAL, "_id": VAL})


TEXT_SETS = ["alpaca", "sharegpt", "lmsys", "processbench", "longbench", "longbench_v1"]
SPLIT = {"longbench_v1": "qasper", "processbench": "gsm8k", "longbench": "short"}
GOOD = {"alpaca": {"instruction": "Say hi", "input": "", "output": "hi"},
        "sharegpt": {"id": "s1", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}]},
        "lmsys": {"conversation_id": "c1", "conversation": [{"role": "user", "content": "Hi"},
                                                            {"role": "assistant", "content": "Hello"}]},
        "processbench": {"id": "p1", "problem": "1+1?", "steps": ["1+1 = 2.", "So 2."]},
        "longbench": {"_id": "l1", "length": "short", "question": "Which?", "choice_A": "a", "choice_B": "b",
                      "choice_C": "c", "choice_D": "d", "answer": "B", "context": "Some context."},
        "longbench_v1": {"_id": "v1", "context": "Some context.", "input": "Who?", "answers": ["Me"]}}


def near_good(ds):
    """A valid record, or one with a single field replaced by a bad value or removed."""
    good = GOOD[ds]
    return st.just(good) | st.builds(lambda k, v: {**good, k: v}, st.sampled_from(sorted(good)), VAL) | \
        st.sampled_from(sorted(good)).map(lambda k: {f: v for f, v in good.items() if f != k})


def text_spec(dataset, path, tok_dir, **kw):
    return dict({"dataset": dataset, "split": SPLIT.get(dataset), "path": str(path), "tokenizer": str(tok_dir),
                 "cache": False}, **kw)


def deep_json(n: int) -> str:
    return "[" * n + "]" * n


# ---- 1. JSON lists of records ----------------------------------------------------------------
@st.composite
def dataset_rows(draw, min_size=0):
    ds = draw(st.sampled_from(TEXT_SETS))
    rows = draw(st.lists(near_good(ds) | near_good(ds) | rows_for(ds) | JSON, min_size=min_size, max_size=6))
    return ds, rows


@fuzz(70)
@given(data=dataset_rows(), deep=st.sampled_from([0, 0, 0, 50, 990, 20000]))
def test_json_rows(qwen3, qwen3_dir, data, deep):
    ds, rows = data
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "rows.json"
        text = json.dumps(rows)
        if deep and rows:                       # one record nested deep (as text: json cannot dump it)
            text = "[" + deep_json(deep) + ("," + text[1:] if len(text) > 2 else "]")
        f.write_text(text)
        n = len(rows) + (1 if deep and rows else 0)
        case("json rows", lambda: load_workload(text_spec(ds, f, qwen3_dir)), records_in=n, names=[f])


# ---- 2. JSON Lines: bad, blank, deep lines ---------------------------------------------------
LINE = (st.builds(json.dumps, near_good("alpaca") | near_good("alpaca") | rows_for("alpaca") | JSON) | st.sampled_from(["", "  ", "{oops", "[1,", "\x00"])
        | st.just(deep_json(20000)) | st.binary(max_size=8).map(lambda b: b.decode("latin-1")))


@fuzz(45)
@given(ds=st.just("alpaca"), lines=st.lists(LINE, max_size=6),
       raw=st.binary(max_size=6))
def test_jsonl_lines(qwen3, qwen3_dir, ds, lines, raw):
    with tempfile.TemporaryDirectory() as d:
        name = {"alpaca": "rows.jsonl", "processbench": "gsm8k.jsonl", "longbench_v1": "qasper.jsonl"}[ds]
        f = Path(d) / name
        data = "\n".join(lines).encode("utf-8", "surrogatepass") + raw
        f.write_bytes(data)
        case("jsonl lines", lambda: load_workload(text_spec(ds, f, qwen3_dir)), records_in=len(data.splitlines()),
             names=[f])


# ---- 3. parquet: typed columns with nulls, and corrupted files -------------------------------
def parquet_table(seed: int):
    """A 6-row table: each column mostly strings (with nulls, blanks, NULs), sometimes ints or lists."""
    import pyarrow as pa
    rng = np.random.default_rng(seed)
    pool = np.array(["Say hi", "Add 2 and 2", "4", "Blue.", None, "", " ", "\x00", "caf\u00e9"], dtype=object)
    p = [0.2, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05, 0.05, 0.05]
    cols = {}
    for name in ("instruction", "input", "output"):
        kind = rng.choice(["str", "int", "list", "absent"], p=[0.85, 0.05, 0.05, 0.05])
        if kind == "str":
            cols[name] = list(rng.choice(pool, size=6, p=p))
        elif kind == "int":
            cols[name] = [int(x) for x in rng.integers(-5, 5, size=6)]
        elif kind == "list":
            cols[name] = [["a", "b"]] * 6
    return pa.table(cols) if cols else pa.table({"other": list(range(6))})


@fuzz(30)
@given(seed=st.integers(0, 2**32), cut=st.integers(0, 9).map(lambda i: [0, 4, 100, -8][i - 6] if i > 5 else None))
def test_parquet(qwen3, qwen3_dir, seed, cut):
    import pyarrow.parquet as pq
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "rows.parquet"
        table = parquet_table(seed)
        pq.write_table(table, f)
        if cut is not None:
            f.write_bytes(f.read_bytes()[:cut])
        case("parquet", lambda: load_workload(text_spec("alpaca", f, qwen3_dir)),
             records_in=table.num_rows if cut is None else None, names=[f])


# ---- 4. raw bytes and mutated valid files ----------------------------------------------------
VALID = json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"},
                    {"instruction": "Add", "input": "2+2", "output": "4"}]).encode()


@st.composite
def mutated(draw):
    b = bytearray(VALID)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["cut", "flip", "insert"]))
        if op == "cut":
            del b[i:]
        elif op == "flip":
            b[i] = draw(st.integers(0, 255))
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=4))
        if not b:
            break
    return bytes(b)


@fuzz(45)
@given(data=st.binary(max_size=120) | mutated(), suffix=st.sampled_from([".json", ".jsonl", ".parquet", ".txt"]))
def test_bytes(qwen3, qwen3_dir, data, suffix):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / ("x" + suffix)
        f.write_bytes(data)
        case("raw bytes", lambda: load_workload(text_spec("alpaca", f, qwen3_dir)), names=[f])


# ---- 5. trace CSVs: huge, negative, blank and ragged cells -----------------------------------
CELL = (st.sampled_from(["1", "0", "-3", "nan", "inf", "", " ", "2.5", "1e3", " 42 ", "x", "1e19", "1e308", "1e400",
                         "12345678901234567890", "9" * 5000, "1000000000", "1000000001", "\x00", "1_0"])
        | st.integers(-10**22, 10**22).map(str) | st.floats().map(repr) | st.text(max_size=5)
        | st.integers(1, 5000).map(str) | st.integers(1, 5000).map(str))
HEADERS = {"azure-conv": ["TIMESTAMP,ContextTokens,GeneratedTokens", "GeneratedTokens,ContextTokens",
                          "ContextTokens,GeneratedTokens,Extra", "a,b"],
           "burstgpt": ["Timestamp,Model,Request tokens,Response tokens", "Model,Response tokens,Request tokens"]}


@fuzz(70)
@given(ds=st.sampled_from(["azure-conv", "azure-conv", "burstgpt"]), data=st.data())
def test_trace_csv(ds, data):
    header = data.draw(st.sampled_from(HEADERS[ds]))
    cell = CELL | st.sampled_from(["ChatGPT", "GPT-4"]) if ds == "burstgpt" else CELL
    good = st.lists(st.integers(1, 5000).map(str) | st.sampled_from(["GPT-4", "ChatGPT", "t"]), min_size=3, max_size=4)
    rows = data.draw(st.lists(st.lists(cell, max_size=5) | good, max_size=8))
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    text = header + "\n" + buf.getvalue() + data.draw(st.sampled_from(["", "\n", ",,\n", "\n\n"]))
    split = data.draw(st.sampled_from([None, "GPT-4"])) if ds == "burstgpt" else None
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "t.csv"
        f.write_bytes(text.encode("utf-8", "surrogatepass"))      # a lone surrogate: not UTF-8 on disk
        n = len(list(csv.reader(io.StringIO(text, newline="")))) - 1
        case("trace csv", lambda: load_workload({"dataset": ds, "path": str(f), "split": split}), records_in=n,
             names=[f])


# ---- 6. spec fields (synthetic, traces): every type and range --------------------------------
ODD = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4) | st.just([1])
INTS = st.sampled_from([None, 1, 7, 10**7, 10**7 + 1, 10**9, 10**9 + 1, 0, -1, 2**70]) | ODD
FIELDS = {"num_requests": st.sampled_from([None, 1, 5, 50, 0, -1, 10**7 + 1, 10**30, 2.0, "5", True]),
          "seed": st.sampled_from([None, 0, 3, -1, 2**80, 1.5, "s"]),
          "p": st.sampled_from([None, 0.5, 1, 1e-9, 1e-12, 0, -0.1, 1.5, float("nan"), float("inf"), "0.1", True]),
          "input_len": INTS, "input_min": INTS, "input_max": INTS, "max_input_tokens": INTS,
          "max_output_tokens": INTS,
          "input_dist": st.sampled_from(["fixed", "uniform", "geometric", "zipf", 3, None]),
          "cache": st.sampled_from([True, False, "yes", 1]), "chat_template": st.sampled_from([False, 0, "no"]),
          "split": st.sampled_from([None, "x", 3]), "tokenizer": st.sampled_from([None, "no-such-tok", 5, ["a"]])}


ALL_FIELDS = [f.name for f in dataclasses.fields(DatasetSpec)] + ["bogus_key"]


BASE = {"synthetic": {"p": 0.1, "input_len": 8, "num_requests": 20}, "burstgpt": {}, "no-such": {}, 3: {}}


@fuzz(60)
@given(ds=st.sampled_from(["synthetic", "synthetic", "synthetic", "burstgpt", "no-such", 3]), data=st.data(),
       extra=st.sampled_from([None, None, None, "bogus_key"]))
def test_spec_fields(ds, data, extra, data_dir):
    """A valid spec with one to three fields replaced by odd values (or an unknown key / dataset)."""
    spec = dict(BASE[ds], dataset=ds)
    for k in data.draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True)):
        spec[k] = data.draw(FIELDS[k])
    if extra:
        spec[extra] = 1
    if ds == "burstgpt":
        spec = dict(spec, data_dir=str(data_dir))         # the real 400-row slice
    if isinstance(spec.get("num_requests"), int) and spec["num_requests"] > 10**5 and ds == "synthetic":
        spec["num_requests"] = 10**7 + 1                  # the valid huge ones would take minutes
    names = ["dataset", *(f"'{k}'" for k in ALL_FIELDS), *(f"{k}=" for k in ALL_FIELDS)]
    wl = case("spec fields", lambda: load_workload(spec), names=names)
    if wl is not None and ds == "synthetic":
        assert len(wl) + len(wl.skipped) == (spec.get("num_requests") or 1000)


# ---- 7. cache entries ------------------------------------------------------------------------
def _rewrite(path: Path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k, v in list(arrays.items()):
        if v is None:
            del arrays[k]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _doc(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["doc"].tobytes().decode())


def _docbytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


CACHE_FAULTS = {
    "short input_len": lambda p: _rewrite(p, input_len=np.array([3], dtype=np.int64)),
    "short ids": lambda p: _rewrite(p, ids=np.array([1, 2], dtype=np.int32)),
    "2-D arrays": lambda p: _rewrite(p, output_len=np.ones((2, 2), dtype=np.int64)),
    "negative lengths": lambda p: _rewrite(p, output_len=-np.ones(3, dtype=np.int64)),
    "huge lengths": lambda p: _rewrite(p, output_len=np.full(3, 10**15, dtype=np.int64)),
    "ids disagree with input_len": lambda p: _rewrite(p, input_len=np.array([1, 1, 1], dtype=np.int64)),
    "missing array": lambda p: _rewrite(p, truncated=None),
    "doc without requests": lambda p: _rewrite(p, doc=_docbytes({k: v for k, v in _doc(p).items() if k != "requests"})),
    "doc is a list": lambda p: _rewrite(p, doc=_docbytes([1, 2])),
    "doc not JSON": lambda p: _rewrite(p, doc=np.frombuffer(b"\xff{", dtype=np.uint8)),
    "meta not an object": lambda p: _rewrite(p, doc=_docbytes(dict(_doc(p), meta=[1]))),
    "request rows malformed": lambda p: _rewrite(p, doc=_docbytes(dict(_doc(p), requests=[[1], [2], [3]]))),
    "other key (collision)": lambda p: _rewrite(p, doc=_docbytes(dict(_doc(p), key="other"))),
    "entry truncated": lambda p: p.write_bytes(p.read_bytes()[:40]),
    "entry empty": lambda p: p.write_bytes(b""),
    "entry is a folder": lambda p: (p.unlink(), p.mkdir()),
    "cache folder is a file": lambda p: (shutil.rmtree(p.parent), p.parent.write_text("x")),
}
CACHE_ROWS = [{"instruction": "Say hi", "output": "hi there"}, {"instruction": "Add", "input": "2+2", "output": "4"},
              {"instruction": "Name a colour", "output": "Blue."}]


def _cache_case(root: Path, qwen3_dir, corrupt):
    src = root / "a.json"
    src.write_text(json.dumps(CACHE_ROWS))
    spec = {"dataset": "alpaca", "path": str(src), "tokenizer": str(qwen3_dir)}
    mp = pytest.MonkeyPatch()
    mp.setenv("PDLIB_CACHE_DIR", str(root / "c"))
    try:
        fresh = load_workload(spec)
        entry = Path(fresh.meta["cache"]["path"])
        corrupt(entry)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            wl = case("cache entries", lambda: load_workload(spec), records_in=len(CACHE_ROWS))
        assert wl is not None, "a cache fault must never stop the load"
        assert [(r.id, r.prompt_ids, r.output_len) for r in wl.requests] == \
               [(r.id, r.prompt_ids, r.output_len) for r in fresh.requests]
        return wl, [x for x in w if issubclass(x.category, CacheWarning)]
    finally:
        mp.undo()


@pytest.mark.parametrize("fault", sorted(CACHE_FAULTS))
def test_cache_faults(tmp_path, qwen3, qwen3_dir, fault):
    wl, warned = _cache_case(tmp_path, qwen3_dir, CACHE_FAULTS[fault])
    assert wl.meta["cache"]["hit"] is False
    if fault != "other key (collision)":
        assert warned and all("\n" not in str(x.message) for x in warned)


@fuzz(20)
@given(pos=st.floats(0, 1), byte=st.integers(0, 255), width=st.integers(1, 16))
def test_cache_bytes_mutated(qwen3, qwen3_dir, pos, byte, width):
    def corrupt(p):
        b = bytearray(p.read_bytes())
        i = int(pos * (len(b) - 1))
        b[i:i + width] = bytes([byte]) * width
        p.write_bytes(bytes(b))
    with tempfile.TemporaryDirectory() as d:
        _cache_case(Path(d), qwen3_dir, corrupt)


# ---- 8. tokenizer folders --------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (what byte-level BPE vocabularies use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


TINY_VOCAB = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
TINY_VOCAB.update({"He": 256, "ll": 257, "Hell": 258, "Hello": 259, "<|endoftext|>": 260})
TINY_MERGES = "#version: 0.2\nH e\nl l\nHe ll\nHell o\n"


def _tiny(folder: Path, vocab=None, merges=TINY_MERGES):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(TINY_VOCAB if vocab is None else vocab))
    (folder / "merges.txt").write_text(merges)


def _real(folder: Path, qwen3_dir, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).symlink_to(qwen3_dir / n)


TOKENIZER_FOLDERS = {
    "empty folder": lambda d, q: d.mkdir(),
    "only merges.txt": lambda d, q: (d.mkdir(), (d / "merges.txt").write_text(TINY_MERGES)),
    "only vocab.json": lambda d, q: (d.mkdir(), (d / "vocab.json").write_text(json.dumps(TINY_VOCAB))),
    "vocab.json truncated": lambda d, q: (_tiny(d), (d / "vocab.json").write_text(json.dumps(TINY_VOCAB)[:300])),
    "vocab.json one entry": lambda d, q: _tiny(d, {"<|endoftext|>": 0}, "#version: 0.2\n"),
    "vocab.json a list": lambda d, q: _tiny(d, list(TINY_VOCAB)),
    "vocab.json string ids": lambda d, q: _tiny(d, {k: str(v) for k, v in TINY_VOCAB.items()}),
    "vocab.json not UTF-8": lambda d, q: (_tiny(d), (d / "vocab.json").write_bytes(b"{\"\xff\xfe\": 0}")),
    "vocab.json is a folder": lambda d, q: (d.mkdir(), (d / "vocab.json").mkdir(), (d / "merges.txt").write_text("")),
    "vocab without bytes": lambda d, q: _tiny(d, {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")},
                                              "#version: 0.2\n"),
    "merges garbage": lambda d, q: _tiny(d, merges="#version: 0.2\nthis line has three\n"),
    "merges name unknown tokens": lambda d, q: _tiny(d, merges="#version: 0.2\nq9 z8\n"),
    "tokenizer.json garbage": lambda d, q: (d.mkdir(), (d / "tokenizer.json").write_text("{not json")),
    "tokenizer.json tiny word-level": lambda d, q: (d.mkdir(), (d / "tokenizer.json").write_text(json.dumps(
        {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"},
         "pre_tokenizer": {"type": "Whitespace"}, "added_tokens": []}))),
    "tokenizer_config.json garbage": lambda d, q: (_tiny(d), (d / "tokenizer_config.json").write_text("{x")),
    "tiny byte-level BPE (valid)": lambda d, q: _tiny(d),
    "real vocab + merges only": lambda d, q: _real(d, q, "vocab.json", "merges.txt"),
    "real vocab + merges + config.json": lambda d, q: _real(d, q, "vocab.json", "merges.txt", "config.json"),
}


def _tok_case(folder: Path, n_rows: int = 3):
    src = folder.parent / "rows.json"
    src.write_text(json.dumps(CACHE_ROWS[:n_rows]))
    return case("tokenizer folders", lambda: load_workload(text_spec("alpaca", src, folder)), records_in=n_rows,
                names=[folder])


@pytest.mark.parametrize("kind", list(TOKENIZER_FOLDERS))
def test_tokenizer_folders(tmp_path, qwen3_dir, kind):
    folder = tmp_path / "tok"
    TOKENIZER_FOLDERS[kind](folder, qwen3_dir)
    wl = _tok_case(folder)
    if "valid" in kind or kind.startswith("real"):
        assert wl is not None and not wl.skipped
    if kind.startswith("real"):                           # the real Qwen3 BPE, not a 1-entry vocabulary
        tok, ref = load_tokenizer(str(folder)), load_tokenizer(str(qwen3_dir))
        assert len(tok.hf) >= 151643 and tok.count(["Hello world"]) == [2]
        assert [r.prompt_ids for r in wl.requests] == [ref.hf(r.prompt)["input_ids"] for r in wl.requests]


@fuzz(20)
@given(cut=st.integers(0, 2000), drop=st.lists(st.sampled_from(sorted(TINY_VOCAB)), max_size=40),
       merges=st.lists(st.text("Hel o\n", max_size=6), max_size=4))
def test_tokenizer_vocab_mutated(cut, drop, merges):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "tok"
        vocab = {k: v for k, v in TINY_VOCAB.items() if k not in drop}
        _tiny(folder, vocab, TINY_MERGES + "\n".join(merges))
        if cut:
            raw = (folder / "vocab.json").read_bytes()
            (folder / "vocab.json").write_bytes(raw[:cut])
        _tok_case(folder)


# ---- 9. the CLI: one line and exit 2, or the stats with the skip reasons ---------------------
def _cli_files(tmp: Path, qwen3_dir) -> dict:
    (tmp / "deep.json").write_text("[" + deep_json(100000) + "]")
    (tmp / "sur.json").write_text('[{"instruction": "a\\ud800", "output": "x"}, {"instruction": "b", "output": "y"}]')
    (tmp / "big.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nt,1e19,3\nt,12345678901234567890,4\n"
                                 "t,1e308,5\n,,\nt,10,20\n")
    _tiny(tmp / "one", {"<|endoftext|>": 0}, "#version: 0.2\n")
    _real(tmp / "qwen", qwen3_dir, "vocab.json", "merges.txt", "config.json")
    (tmp / "a.json").write_text(json.dumps(CACHE_ROWS + [{"instruction": "x", "output": " "}]))
    (tmp / "cachefile").write_text("not a folder")
    return {
        "deep JSON": (["--dataset", "alpaca", "--tokenizer", "qwen3", "--path", tmp / "deep.json"], 2, "nested"),
        "lone surrogate": (["--dataset", "alpaca", "--tokenizer", "qwen3", "--path", tmp / "sur.json"], 0,
                           "instruction: not valid Unicode"),
        "huge counts": (["--dataset", "azure-conv", "--path", tmp / "big.csv"], 0, "ContextTokens: too large"),
        "1-entry vocabulary": (["--dataset", "alpaca", "--tokenizer", tmp / "one", "--path", tmp / "a.json"], 2,
                               "allowed >= 256"),
        "vocab + merges + config": (["--dataset", "alpaca", "--tokenizer", tmp / "qwen", "--path", tmp / "a.json"], 0,
                                    "output: empty"),
        "num_requests 0": (["--dataset", "synthetic", "--p", "0.1", "--input-len", "4", "--num-requests", "0"], 2,
                           "num_requests"),
        "p out of range": (["--dataset", "synthetic", "--p", "2", "--input-len", "4"], 2, "allowed 1e-09..1"),
        "input-len 10^12": (["--dataset", "synthetic", "--p", "0.1", "--input-len", str(10**12)], 2, "10^9"),
        "cache folder is a file": (["--dataset", "alpaca", "--tokenizer", "qwen3", "--path", tmp / "a.json"], 0,
                                   "output: empty"),
    }


CLI_CASES = ["deep JSON", "lone surrogate", "huge counts", "1-entry vocabulary", "vocab + merges + config",
             "num_requests 0", "p out of range", "input-len 10^12", "cache folder is a file"]


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli(tmp_path, capsys, monkeypatch, qwen3, data_dir, qwen3_dir, name):
    argv, want_rc, want = _cli_files(tmp_path, qwen3_dir)[name]
    if name == "cache folder is a file":
        monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "cachefile"))
    t = TALLY["cli"]
    t["tried"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        rc = main(["data", "stats", "--data-dir", str(data_dir), *map(str, argv)])
    out, err = capsys.readouterr()
    assert rc == want_rc, err
    if rc == 2:
        assert not out and len(err.strip().splitlines()) == 1 and want in err
        t["clear errors"] += 1
    else:
        assert f"skipped: {want}" in out       # one "skipped: REASON  COUNT" row per reason
        t["clean loads" if re.search(r"^skipped\s+0$", out, re.MULTILINE) else "counted skips"] += 1


# ---- summary ---------------------------------------------------------------------------------
def test_zz_summary():
    if not TALLY:
        pytest.skip("run with the whole module for the tally")
    width = max(map(len, TALLY)) + 2
    lines = ["class".ljust(width) + " | ".join(COLUMNS)]
    for cls, t in [*TALLY.items(), ("total", {c: sum(t[c] for t in TALLY.values()) for c in COLUMNS})]:
        lines.append(cls.ljust(width) + " | ".join(str(t[c]).rjust(len(c)) for c in COLUMNS))
    print("\n" + "\n".join(lines))
    total = {c: sum(t[c] for t in TALLY.values()) for c in COLUMNS}
    assert total["tracebacks"] == total["silent drops"] == total["unclear errors"] == 0
    if len(TALLY) == 9:
        assert total["tried"] >= 250
