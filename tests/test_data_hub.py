"""Hub-only datasets (lmsys, processbench, longbench_v1, LongBench v2 rows, alpaca rows) read from
small records written here in the hub's row format (JSONL / JSON / parquet), through the same
per-record parsers the hub path uses; and the immediate, explicit failure with no hub and no copy."""
from __future__ import annotations

import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdlib.data import DATASETS, DataError, HubUnavailable, load_tokenizer, load_workload, workload_stats
from pdlib.data.sources import get_source

pytestmark = pytest.mark.usefixtures("isolated_cache_dir")


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


LMSYS = [
    {"conversation_id": "a1", "model": "vicuna-13b", "turn": 1, "language": "English", "redacted": False,
     "conversation": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"conversation_id": "a2", "model": "koala-13b", "turn": 2, "language": "English", "redacted": False,
     "conversation": [{"role": "user", "content": "Write a haiku about rain."},
                      {"role": "assistant", "content": "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky"},
                      {"role": "user", "content": "Another one"}, {"role": "assistant", "content": "No."}]},
    {"conversation_id": "a3", "model": "x", "turn": 1, "language": "English", "redacted": False,
     "conversation": [{"role": "user", "content": "hello?"}]},                       # no reply -> skip
    {"conversation_id": "a4", "model": "x", "turn": 1, "language": "English", "redacted": False,
     "conversation": [{"role": "user", "content": 5}]},                               # bad type -> skip
]


def test_lmsys_parquet_rows(tmp_path, data_dir, qwen3_dir):
    f = tmp_path / "train-00000-of-00006.parquet"
    pq.write_table(pa.Table.from_pylist(LMSYS[:3]), f)
    _jsonl(tmp_path / "train-00001-of-00006.jsonl", LMSYS[3:])        # a type parquet cannot hold
    wl = load_workload({"dataset": "lmsys", "path": str(tmp_path), "tokenizer": str(qwen3_dir)})
    assert [r.source_id for r in wl.requests] == ["a1", "a2"]
    assert wl.requests[0].prompt == "What is the capital of France?"
    assert wl.requests[1].output_len > wl.requests[0].output_len
    assert [(s.index, s.source_id) for s in wl.skipped] == [(2, None), (3, None)]
    assert "no assistant reply" in wl.skipped[0].reason and "conversation[0]" in wl.skipped[1].reason
    # PDLIB_DATA_DIR layout: <data_dir>/lmsys/*.parquet
    (tmp_path / "dd" / "lmsys").mkdir(parents=True)
    f.rename(tmp_path / "dd" / "lmsys" / f.name)
    (tmp_path / "train-00001-of-00006.jsonl").rename(tmp_path / "dd" / "lmsys" / "train-00001-of-00006.jsonl")
    wl2 = load_workload({"dataset": "lmsys", "data_dir": str(tmp_path / "dd"), "tokenizer": str(qwen3_dir)})
    assert [r.output_len for r in wl2.requests] == [r.output_len for r in wl.requests]


def test_processbench_splits(tmp_path, qwen3_dir):
    rows = [{"id": f"gsm8k-{i}", "generator": "Qwen2-7B-Instruct", "problem": f"Tom has {i} apples. How many?",
             "steps": [f"Tom has {i} apples.", f"So the answer is {i}."], "final_answer_correct": True, "label": -1}
            for i in range(5)]
    rows.append({"id": "gsm8k-bad", "problem": "x", "steps": []})
    _jsonl(tmp_path / "gsm8k.jsonl", rows)
    _jsonl(tmp_path / "math.jsonl", rows[:2])
    wl = load_workload({"dataset": "processbench", "split": "gsm8k", "path": str(tmp_path), "tokenizer": str(qwen3_dir)})
    assert len(wl) == 5 and wl.skipped[0].reason == "steps: empty list"
    r = wl.requests[3]
    assert r.prompt == "Tom has 3 apples. How many?" and r.source_id == "gsm8k-3"
    tok = load_tokenizer(str(qwen3_dir))
    assert r.output_len == len(tok.hf("Tom has 3 apples.\n\nSo the answer is 3.", add_special_tokens=False)["input_ids"])
    assert len(load_workload({"dataset": "processbench", "split": "math", "path": str(tmp_path),
                              "tokenizer": str(qwen3_dir)})) == 2
    with pytest.raises(ValueError, match="omni-math"):
        load_workload({"dataset": "processbench", "path": str(tmp_path), "tokenizer": str(qwen3_dir)})


def test_longbench_v1_and_v2_rows(tmp_path, qwen3_dir):
    v1 = [{"input": "Who wrote it?", "context": "A long story. " * 200, "answers": ["The narrator"], "length": 600,
           "dataset": "narrativeqa", "language": "en", "all_classes": None, "_id": "n1"},
          {"input": "", "context": "def f():\n    return 1\n" * 50, "answers": ["return 2"], "length": 100,
           "dataset": "lcc", "language": "python", "all_classes": None, "_id": "n2"},
          {"input": "q", "context": "c", "answers": [], "_id": "n3"}]
    _jsonl(tmp_path / "narrativeqa.jsonl", v1)
    wl = load_workload({"dataset": "longbench_v1", "split": "narrativeqa", "path": str(tmp_path),
                        "tokenizer": str(qwen3_dir)})
    assert len(wl) == 2 and wl.requests[0].input_len > 400 and wl.skipped[0].reason == "answers: empty list"
    assert wl.requests[0].prompt.endswith("Question: Who wrote it?\nAnswer:")
    # the official data.zip layout (also what the hub serves)
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:
        z.write(tmp_path / "narrativeqa.jsonl", "data/narrativeqa.jsonl")
    zwl = load_workload({"dataset": "longbench_v1", "split": "narrativeqa", "path": str(tmp_path / "data.zip"),
                         "tokenizer": str(qwen3_dir)})
    assert [r.prompt_ids for r in zwl.requests] == [r.prompt_ids for r in wl.requests]
    with pytest.raises(DataError, match="no member data/qasper.jsonl"):
        load_workload({"dataset": "longbench_v1", "split": "qasper", "path": str(tmp_path / "data.zip"),
                       "tokenizer": str(qwen3_dir)})
    v2 = [{"_id": "x1", "domain": "Single-Document QA", "sub_domain": "Academic", "difficulty": "easy",
           "length": "short", "question": "What is studied?", "choice_A": "Rain", "choice_B": "Snow",
           "choice_C": "Hail", "choice_D": "Fog", "answer": "C", "context": "A paper about hail. " * 100},
          {"_id": "x2", "length": "medium", "question": "q", "choice_A": "a", "choice_B": "b", "choice_C": "c",
           "choice_D": "d", "answer": "A", "context": "ctx"},
          {"_id": "x3", "length": "short", "question": "q", "choice_A": "a", "choice_B": "b", "choice_C": "c",
           "choice_D": "d", "answer": "E", "context": "ctx"}]
    f = tmp_path / "v2.json"
    f.write_text(json.dumps(v2))
    wl2 = load_workload({"dataset": "longbench", "split": "short", "path": str(f), "tokenizer": str(qwen3_dir)})
    assert [r.source_id for r in wl2.requests] == ["x1"] and wl2.meta["outside_split"] == 1
    assert "not one of A, B, C, D" in wl2.skipped[0].reason
    tok = load_tokenizer(str(qwen3_dir))
    assert wl2.requests[0].output_len == len(tok.hf("The correct answer is (C).", add_special_tokens=False)["input_ids"])


def test_same_parser_for_hub_rows_and_local_rows(qwen3_dir):
    """The hub path hands datasets' dict rows to the very function the local path uses."""
    for name in ("alpaca", "sharegpt", "longbench", "longbench_v1", "lmsys", "processbench"):
        src = get_source(name)
        assert callable(src.parse) and src.HUB_ID == DATASETS[name].hub_id


@pytest.mark.timeout(60)
@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9", "PDLIB_HUB_TIMEOUT": "2"}])
@pytest.mark.parametrize("dataset,split,hub_id", [("lmsys", None, "lmsys/lmsys-chat-1m"),
                                                  ("processbench", "math", "Qwen/ProcessBench"),
                                                  ("longbench_v1", "qasper", "THUDM/LongBench"),
                                                  ("alpaca", None, "tatsu-lab/alpaca")])
def test_no_hub_no_copy_fails_at_once(tmp_path, monkeypatch, qwen3_dir, env, dataset, split, hub_id):
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = {"dataset": dataset, "split": split, "data_dir": str(tmp_path), "tokenizer": str(qwen3_dir)}
    with pytest.raises(HubUnavailable) as e:
        load_workload(spec)
    msg = str(e.value)
    assert repr(dataset) in msg and hub_id in msg and "path=" in msg and "PDLIB_DATA_DIR" in msg


def test_local_only_dataset_without_copy(tmp_path, qwen3_dir):
    with pytest.raises(DataError, match="traces/AzureLLMInferenceTrace_conv.csv"):
        load_workload({"dataset": "azure-conv", "data_dir": str(tmp_path)})
    with pytest.raises(DataError, match="path not found"):
        load_workload({"dataset": "lmsys", "path": str(tmp_path / "nope.parquet"), "tokenizer": str(qwen3_dir)})
    s = workload_stats(load_workload({"dataset": "synthetic", "p": 0.5, "input_len": 3, "num_requests": 10}))
    assert s["count"] == 10
