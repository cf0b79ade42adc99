"""Length-only workloads: the real Azure, BurstGPT and ShareGPT-stats traces; the synthetic
geometric workload; bad trace rows."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pdlib.data import DataError, load_workload, workload_stats


def _raw(path, cin, cout):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([int(r[cin]) for r in rows]), np.array([int(r[cout]) for r in rows])


@pytest.mark.parametrize("name,file,cin,cout,med_in,med_out", [
    ("azure-code", "AzureLLMInferenceTrace_code.csv", "ContextTokens", "GeneratedTokens", 1469, 13),
    ("azure-conv", "AzureLLMInferenceTrace_conv.csv", "ContextTokens", "GeneratedTokens", 1020, 129),
    ("burstgpt", "burstgpt_slice.csv", "Request tokens", "Response tokens", 353, 238),
    ("sharegpt-stats", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "num_prefill_tokens",
     "num_decode_tokens", 1730, 415),
])
def test_real_traces(data_dir, name, file, cin, cout, med_in, med_out):
    ci, co = _raw(data_dir / "traces" / file, cin, cout)
    ok = (ci > 0) & (co > 0)
    wl = load_workload({"dataset": name, "data_dir": str(data_dir), "tokenizer": "qwen3"})
    s = workload_stats(wl)
    assert s["count"] == ok.sum() and s["skipped"] == (~ok).sum()
    assert np.array_equal(wl.input_lens, ci[ok]) and np.array_equal(wl.output_lens, co[ok])
    assert s["p"] == pytest.approx(1 / co[ok].mean())
    assert wl.requests[0].prompt_ids is None and "not the model's tokenizer" in wl.meta["lengths"]
    assert "not used" in wl.meta["tokenizer_note"]
    # medians documented in ../shared/data SOURCES.md (BurstGPT: over the rows with tokens)
    assert np.median(ci[ok]) == med_in and np.median(co[ok]) == med_out


def test_burstgpt_zero_rows_split_and_caps(data_dir):
    wl = load_workload({"dataset": "burstgpt", "data_dir": str(data_dir)})
    assert len(wl.skipped) == 17 and all("Request tokens: zero" in s.reason for s in wl.skipped)
    gpt4 = load_workload({"dataset": "burstgpt", "split": "GPT-4", "data_dir": str(data_dir)})
    assert 0 < len(gpt4) < len(wl) and gpt4.meta["outside_split"] > 0
    capped = load_workload({"dataset": "azure-conv", "data_dir": str(data_dir), "max_output_tokens": 100,
                            "max_input_tokens": 2000, "num_requests": 500, "seed": 1})
    assert len(capped) == 500 and capped.output_lens.max() == 100 and capped.input_lens.max() <= 2000
    assert capped.num_truncated == workload_stats(capped)["truncated"] > 0
    again = load_workload({"dataset": "azure-conv", "data_dir": str(data_dir), "max_output_tokens": 100,
                           "max_input_tokens": 2000, "num_requests": 500, "seed": 1})
    assert [r.id for r in again.requests] == [r.id for r in capped.requests]


BAD_ROWS = [("-5", "10", "negative"), ("nan", "10", "not finite"), ("12", "NaN", "not finite"),
            ("1e400", "3", "not finite"), ("abc", "3", "not a number"), ("2.5", "3", "not an integer"),
            ("", "3", "empty"), ("7", "0", "zero tokens")]


def test_bad_trace_rows_are_counted_skips(tmp_path):
    f = tmp_path / "t.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens", "t,100,20"] + [f"t,{a},{b}" for a, b, _ in BAD_ROWS] + ["t,5"]
    f.write_text("\n".join(lines) + "\n")
    wl = load_workload({"dataset": "azure-code", "path": str(f)})
    assert len(wl) == 1 and wl.requests[0].input_len == 100
    assert len(wl.skipped) == len(BAD_ROWS) + 1
    for s, (_, _, why) in zip(wl.skipped, BAD_ROWS):
        assert why in s.reason
    assert "columns" in wl.skipped[-1].reason


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"), (b"TIMESTAMP,ContextTokens\n1,2\n", "missing column"),
    (b"TIMESTAMP,ContextTokens,GeneratedTokens\n", "no rows"),
    (b"TIMESTAMP,ContextTokens,GeneratedTokens\n\xff\xfe,1,2\n", "not UTF-8"),
    (b"TIMESTAMP,ContextTokens,GeneratedTokens\nt,-1,2\nt,nan,2\n", "no usable rows"),
])
def test_unreadable_traces_name_the_file(tmp_path, content, match):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        load_workload({"dataset": "azure-conv", "path": str(f)})
    assert str(f) in str(e.value)


def test_synthetic_geometric():
    wl = load_workload({"dataset": "synthetic", "p": 0.02, "input_len": 64, "num_requests": 20000, "seed": 3})
    out = wl.output_lens
    assert out.min() >= 1 and abs(out.mean() - 50) < 5 * np.sqrt(0.98) / 0.02 / np.sqrt(20000)
    assert set(wl.input_lens) == {64}
    capped = load_workload({"dataset": "synthetic", "p": 0.02, "input_len": 64, "num_requests": 20000, "seed": 3,
                            "max_output_tokens": 100})
    assert capped.num_truncated == (out > 100).sum() and capped.output_lens.max() == 100
    uni = load_workload({"dataset": "synthetic", "p": 0.1, "input_dist": "uniform", "input_min": 10,
                         "input_max": 20, "num_requests": 500})
    assert uni.input_lens.min() >= 10 and uni.input_lens.max() <= 20
    geo = load_workload({"dataset": "synthetic", "p": 0.1, "input_dist": "geometric", "input_len": 200,
                         "num_requests": 20000})
    assert abs(geo.input_lens.mean() - 200) < 10
    for bad in ({"p": 0}, {"p": 1.5}, {"p": 0.1}, {"p": 0.1, "input_dist": "zipf", "input_len": 3}):
        with pytest.raises(ValueError):
            load_workload(dict(bad, dataset="synthetic"))


# ---- the generic length-trace loader (dataset "trace") ---------------------------------------
def _mooncake_from_azure(data_dir, path, n=300):
    """A Mooncake-style JSONL (timestamp, input_length, output_length, hash_ids) made of the first
    ``n`` real rows of the shipped Azure conversation trace, plus a blank and a broken line."""
    import json
    with open(data_dir / "traces" / "AzureLLMInferenceTrace_conv.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    lines = [json.dumps({"timestamp": 1000 * i, "input_length": int(r["ContextTokens"]),
                         "output_length": int(r["GeneratedTokens"]), "hash_ids": [i, i + 1]})
             for i, r in enumerate(rows)]
    path.write_text("\n".join(lines[:10] + ["", "{not json"] + lines[10:]) + "\n")
    return (np.array([int(r["ContextTokens"]) for r in rows]), np.array([int(r["GeneratedTokens"]) for r in rows]))


@pytest.mark.parametrize("name", ["mooncake_trace.jsonl", "mooncake_trace.csv", "mooncake_trace.txt"])
def test_mooncake_jsonl_is_read_as_json_lines(data_dir, tmp_path, name):
    f = tmp_path / name
    ci, co = _mooncake_from_azure(data_dir, f)
    wl = load_workload({"dataset": "trace", "path": str(f), "tokenizer": "qwen3"})
    assert np.array_equal(wl.input_lens, ci) and np.array_equal(wl.output_lens, co)
    assert wl.name == "mooncake_trace" and wl.meta["format"] == "JSON Lines"
    assert wl.meta["columns"] == {"input": "input_length", "output": "output_length", "names_of": "Mooncake"}
    assert sorted(s.reason for s in wl.skipped) == ["line: blank", ("line: malformed JSON (Expecting property name "
                                                                    "enclosed in double quotes)")]
    assert wl.meta["lengths"].startswith("counts from the trace (") and "Azure" not in wl.meta["lengths"]
    assert "'qwen3' not used (ignored)" in wl.meta["tokenizer_note"]
    s = workload_stats(wl)
    assert s["tokenizer"] == "counts from the trace" and s["tokenizer_note"] == wl.meta["tokenizer_note"]
    assert s["skip_reasons"] == {"line: blank": 1, "line: malformed JSON": 1}


def test_a_named_trace_refuses_other_columns_and_says_what_it_found(data_dir, tmp_path):
    f = tmp_path / "trace.jsonl"
    _mooncake_from_azure(data_dir, f, n=20)
    with pytest.raises(DataError) as e:
        load_workload({"dataset": "azure-conv", "path": str(f)})
    msg = str(e.value)
    assert str(f) in msg and "JSON Lines" in msg and "'ContextTokens'" in msg
    assert "'timestamp', 'input_length', 'output_length', 'hash_ids'" in msg and "dataset 'trace'" in msg
    # the same file with its columns named explicitly loads under the named trace too
    wl = load_workload({"dataset": "azure-conv", "path": str(f), "input_col": "input_length",
                        "output_col": "output_length"})
    assert len(wl) == 20 and wl.name == "azure-conv"


@pytest.mark.parametrize("named,file", [
    ("azure-code", "AzureLLMInferenceTrace_code.csv"), ("azure-conv", "AzureLLMInferenceTrace_conv.csv"),
    ("burstgpt", "burstgpt_slice.csv"), ("sharegpt-stats", "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")])
def test_generic_trace_detects_the_shipped_csvs(data_dir, named, file):
    ref = load_workload({"dataset": named, "data_dir": str(data_dir)})
    wl = load_workload({"dataset": "trace", "path": str(data_dir / "traces" / file)})
    assert wl.name == file.removesuffix(".csv") and wl.meta["format"] == "CSV"
    assert np.array_equal(wl.input_lens, ref.input_lens) and np.array_equal(wl.output_lens, ref.output_lens)
    assert [s.reason for s in wl.skipped] == [s.reason for s in ref.skipped]
    assert "unknown to pdlib" in wl.meta["lengths"] and "unknown" not in ref.meta["lengths"]


def test_column_mapping_and_its_errors(tmp_path):
    f = tmp_path / "lens.csv"
    f.write_text("id,Prompt Tokens,gen\n1,10,3\n2,20,0\n3,30,5\n")
    with pytest.raises(DataError, match=r"CSV: no output-length column \(looked for 'output_length', 'GeneratedTokens'"
                                        r".*name it with --output-col\); columns found: 'id', 'Prompt Tokens', 'gen'$"):
        load_workload({"dataset": "trace", "path": str(f)})   # 'Prompt Tokens' is found: OpenAI's prompt_tokens
    g = tmp_path / "odd.csv"
    g.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"no input-length column \(looked for 'input_length', 'ContextTokens', "
                                        r"'Request tokens', 'num_prefill_tokens'.*; no output-length column.*"
                                        r"columns found: 'a', 'b'$"):
        load_workload({"dataset": "trace", "path": str(g)})
    wl = load_workload({"dataset": "trace", "path": str(f), "input_col": "prompt_tokens", "output_col": "gen"})
    assert wl.input_lens.tolist() == [10, 30] and [s.reason for s in wl.skipped] == ["gen: zero tokens (allowed 1..10^9)"]
    assert wl.meta["columns"]["input"] == "Prompt Tokens" and "named as in" not in wl.meta["lengths"]
    with pytest.raises(DataError, match=r"no column 'nope' \(--output-col\); columns found: 'id', 'Prompt Tokens'"):
        load_workload({"dataset": "trace", "path": str(f), "input_col": "gen", "output_col": "nope"})
    with pytest.raises(DataError, match="both be column 'gen'"):
        load_workload({"dataset": "trace", "path": str(f), "input_col": "gen", "output_col": "GEN"})
    with pytest.raises(ValueError, match="input_col='x': only for length traces"):
        load_workload({"dataset": "alpaca", "input_col": "x"})
    with pytest.raises(DataError, match="needs path="):
        load_workload({"dataset": "trace"})


def test_json_list_and_burstgpt_names_in_jsonl(tmp_path):
    import json
    f = tmp_path / "calls.json"
    f.write_text(json.dumps([{"prompt_tokens": 7, "completion_tokens": 2}, {"prompt_tokens": 9, "completion_tokens": "4"},
                             [1, 2]]))
    wl = load_workload({"dataset": "trace", "path": str(f)})
    assert wl.meta["format"] == "JSON" and wl.output_lens.tolist() == [2, 4] and wl.name == "calls"
    assert wl.skipped[0].reason == "record is list, expected an object"
    g = tmp_path / "burst.ndjson"
    g.write_text('{"Model": "GPT-4", "Request tokens": 100, "Response tokens": 9}\n{"Model": "ChatGPT"}\n')
    wl = load_workload({"dataset": "trace", "path": str(g)})
    assert wl.input_lens.tolist() == [100] and wl.skipped[0].reason == "Request tokens: missing"
    lst = tmp_path / "calls.txt"                 # a JSON list under another suffix: read by its first character
    lst.write_text(f.read_text())
    assert load_workload({"dataset": "trace", "path": str(lst)}).output_lens.tolist() == [2, 4]
    h = tmp_path / "scalars.jsonl"
    h.write_text("1\n2\n")
    with pytest.raises(DataError, match="no record is a JSON object"):
        load_workload({"dataset": "trace", "path": str(h)})


def test_every_shipped_trace_has_a_params_entry(data_dir):
    from pdlib import paths
    from pdlib.params import load_spec
    entries = {Path(s["spec"]["path"]).name: s["name"]
               for s in (load_spec("dataset", p.stem, data_dir=data_dir) for p in (paths.params_dir() / "datasets").glob("*.yaml"))
               if "path" in s.get("spec", {})}
    shipped = sorted(p.name for p in (data_dir / "traces").iterdir() if p.suffix in (".csv", ".jsonl"))
    assert len(shipped) == 4
    for f in shipped:
        assert f in entries, f"no params/datasets entry reads traces/{f}"
        wl = load_workload(load_spec("dataset", entries[f], data_dir=data_dir)["spec"])
        assert len(wl) > 300 and wl.meta["files"] == [str(data_dir / "traces" / f)]
