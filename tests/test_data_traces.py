"""Length-only workloads: the real Azure, BurstGPT and ShareGPT-stats traces; the synthetic
geometric workload; bad trace rows."""
from __future__ import annotations

import csv

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
