"""Fuzzing the loaders: a corpus of broken files, and hypothesis-generated records, rows and bytes.
Every outcome is either a valid workload (with counted skips) or a ``DataError`` naming the file;
never another exception, never a request with a non-positive length."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdlib.data import DataError, load_tokenizer, load_workload


@pytest.fixture(scope="module")
def qwen3(qwen3_dir):
    return load_tokenizer(str(qwen3_dir))   # loaded once; later specs pass the same folder


BROKEN = [
    ("empty.json", b"", "empty file"),
    ("blank.json", b"  \n\t ", "empty file"),
    ("trunc.json", b'[{"instruction": "a", "output": "b"', "malformed JSON"),
    ("object.json", b'{"instruction": "a", "output": "b"}', "top level is a JSON dict"),
    ("string.json", b'"hello"', "top level is a JSON str"),
    ("emptylist.json", b"[]", "JSON list is empty"),
    ("latin1.json", '[{"instruction": "caf\u00e9", "output": "x"}]'.encode("latin-1"), "not UTF-8"),
    ("scalars.json", b"[1, 2, null, \"x\"]", "no usable records"),
    ("blanks.json", b'[{"instruction": " ", "output": "b"}, {"instruction": "a", "output": ""}]', "no usable records"),
    ("badlines.jsonl", b"{oops\n[1,\n\xff\xff\n", "no JSON records"),
    ("corrupt.parquet", b"PAR1 this is not parquet", "not a readable parquet"),
    ("data.txt", b"instruction,output\n", "unsupported file type"),
]


@pytest.mark.parametrize("dataset", ["alpaca", "sharegpt", "lmsys", "longbench_v1", "processbench"])
@pytest.mark.parametrize("name,content,match", BROKEN)
def test_broken_file_corpus(tmp_path, qwen3, qwen3_dir, dataset, name, content, match):
    f = tmp_path / name
    f.write_bytes(content)
    split = {"longbench_v1": "qasper", "processbench": "gsm8k"}.get(dataset)
    with pytest.raises(DataError, match=match) as e:
        load_workload({"dataset": dataset, "split": split, "path": str(f), "tokenizer": str(qwen3_dir), "cache": False})
    assert str(f) in str(e.value)


def test_single_bad_records_are_counted(tmp_path, qwen3, qwen3_dir):
    rows = [{"instruction": "Say hi", "input": "", "output": "hi"}, 7, {"instruction": "x"},
            {"instruction": ["a"], "output": "b"}, {"instruction": "a", "input": 3, "output": "b"},
            {"instruction": "Add", "input": "2+2", "output": "4"}]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(rows))
    wl = load_workload({"dataset": "alpaca", "path": str(f), "tokenizer": str(qwen3_dir), "cache": False})
    assert [r.id for r in wl.requests] == ["0", "5"]
    assert [(s.index, s.reason) for s in wl.skipped] == [
        (1, "record is int, expected an object"), (2, "output: missing"),
        (3, "instruction: is list, expected a string"), (4, "input: is int, expected a string")]
    assert wl.meta["skip_reasons"] == {"record is int, expected an object": 1, "output": 1, "instruction": 1, "input": 1}
    lines = tmp_path / "a.jsonl"
    lines.write_bytes(b'{"instruction": "Say hi", "output": "hi"}\n{broken\n\xff\n{"instruction": "b", "output": "c"}\n')
    wl = load_workload({"dataset": "alpaca", "path": str(lines), "tokenizer": str(qwen3_dir), "cache": False})
    assert len(wl) == 2 and [s.index for s in wl.skipped] == [1, 2]
    assert "malformed JSON" in wl.skipped[0].reason and "not UTF-8" in wl.skipped[1].reason


def test_longbench_markdown_missing_context(tmp_path, qwen3, qwen3_dir, data_dir):
    src = sorted((data_dir / "longbench_v2" / "single-document_qa").glob("sample_*_short.md"))[:2]
    for md in src:
        (tmp_path / md.name).write_text(md.read_text())
    ctx = src[0].with_name(src[0].stem + "_context.txt")
    (tmp_path / ctx.name).write_text("A short context about nothing in particular.")
    wl = load_workload({"dataset": "longbench", "path": str(tmp_path), "tokenizer": str(qwen3_dir), "cache": False})
    assert len(wl) == 1 and len(wl.skipped) == 1 and "context file missing" in wl.skipped[0].reason


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=12)
TEXT = st.text(min_size=0, max_size=30)
ALPACA_ROW = st.fixed_dictionaries({}, optional={"instruction": TEXT | JSON, "input": TEXT | JSON, "output": TEXT | JSON})
TURN = st.fixed_dictionaries({}, optional={"from": st.sampled_from(["human", "gpt", "system", "user"]) | JSON,
                                           "value": TEXT | JSON})
SHAREGPT_ROW = st.fixed_dictionaries({"id": TEXT}, optional={"conversations": st.lists(TURN, max_size=4) | JSON})
LMSYS_ROW = st.fixed_dictionaries({}, optional={"conversation": st.lists(st.fixed_dictionaries(
    {}, optional={"role": st.sampled_from(["user", "assistant"]) | JSON, "content": TEXT | JSON}), max_size=4) | JSON})
PB_ROW = st.fixed_dictionaries({}, optional={"problem": TEXT | JSON, "steps": st.lists(TEXT | JSON, max_size=3) | JSON})
LB1_ROW = st.fixed_dictionaries({}, optional={"context": TEXT | JSON, "input": TEXT | JSON,
                                              "answers": st.lists(TEXT | JSON, max_size=2) | JSON})
CASES = {"alpaca": ALPACA_ROW, "sharegpt": SHAREGPT_ROW, "lmsys": LMSYS_ROW, "processbench": PB_ROW,
         "longbench_v1": LB1_ROW}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])


def _check(spec, path):
    try:
        wl = load_workload(dict(spec, path=str(path), cache=False))
    except DataError as e:
        assert str(path) in str(e)
        return
    assert len(wl) >= 1
    for r in wl.requests:
        assert r.input_len >= 1 and r.output_len >= 1
        assert r.prompt_ids is None or len(r.prompt_ids) == r.input_len


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_fuzz_records(qwen3, qwen3_dir, dataset):
    split = {"longbench_v1": "qasper", "processbench": "gsm8k"}.get(dataset)

    @FUZZ
    @given(rows=st.lists(CASES[dataset] | JSON, min_size=0, max_size=6), jsonl=st.booleans())
    def run(rows, jsonl):
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / ("rows.jsonl" if jsonl else "rows.json")
            f.write_text("\n".join(json.dumps(r) for r in rows) if jsonl else json.dumps(rows))
            _check({"dataset": dataset, "split": split, "tokenizer": str(qwen3_dir)}, f)
    run()


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_bytes(qwen3, qwen3_dir, data):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "x.json"
        f.write_bytes(data)
        _check({"dataset": "alpaca", "tokenizer": str(qwen3_dir)}, f)


CELL = st.sampled_from(["1", "0", "-3", "nan", "inf", "", "2.5", "1e3", " 42 ", "x", "99999999999"]) | st.text(max_size=6)


@FUZZ
@given(rows=st.lists(st.lists(CELL, min_size=0, max_size=4), max_size=8),
       header=st.sampled_from(["TIMESTAMP,ContextTokens,GeneratedTokens", "ContextTokens,GeneratedTokens",
                               "a,b", "GeneratedTokens,TIMESTAMP,ContextTokens"]))
def test_fuzz_trace_rows(rows, header):
    import csv
    import io
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "t.csv"
        f.write_text(header + "\n" + buf.getvalue())
        _check({"dataset": "azure-conv"}, f)
