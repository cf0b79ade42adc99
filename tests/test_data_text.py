"""Text datasets from the real files in ../shared/data, tokenized with the real Qwen3 / Llama-2
tokenizers: lengths, skips, filters, sampling, chat template, cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pdlib.data import DataError, load_tokenizer, load_workload, workload_stats

pytestmark = pytest.mark.usefixtures("isolated_cache_dir")


@pytest.fixture(scope="session")
def qwen3(qwen3_dir):
    return load_tokenizer(str(qwen3_dir))


@pytest.fixture(scope="module")
def alpaca_full(data_dir, qwen3_dir, qwen3):
    """All of alpaca_5000 with Qwen3 - tokenized once for the module (cache off: measured fresh)."""
    return load_workload({"dataset": "alpaca", "data_dir": str(data_dir), "tokenizer": str(qwen3_dir), "cache": False})


def test_alpaca_lengths_match_the_tokenizer(alpaca_full, data_dir, qwen3):
    raw = json.loads((data_dir / "alpaca" / "alpaca_5000.json").read_text())
    empty = [i for i, r in enumerate(raw) if not r["output"].strip()]
    wl = alpaca_full
    assert len(wl) == len(raw) - len(empty) and [s.index for s in wl.skipped] == empty
    assert all(s.reason.startswith("output") for s in wl.skipped)
    for req in wl.requests[:: len(wl) // 7]:
        r = raw[int(req.id)]
        prompt = r["instruction"] + ("\n\n" + r["input"] if r["input"].strip() else "")
        assert req.prompt == prompt
        assert req.prompt_ids == qwen3.hf(prompt)["input_ids"] and req.input_len == len(req.prompt_ids)
        assert req.output_len == len(qwen3.hf(r["output"], add_special_tokens=False)["input_ids"])
    assert wl.meta["tokenizer"] == "qwen3-1.7b" and wl.meta["files"][0].endswith("alpaca_5000.json")
    s = workload_stats(wl)
    assert s["count"] == len(wl) and s["skipped"] == len(empty) and s["truncated"] == 0
    assert s["p"] == pytest.approx(1 / wl.output_lens.mean())
    assert s["output_p95"] == pytest.approx(np.percentile(wl.output_lens, 95))
    assert s["input_median"] <= s["input_p95"] <= s["input_max"]


def test_filters_seed_and_num_requests(alpaca_full, data_dir, qwen3_dir):
    base = {"dataset": "alpaca", "data_dir": str(data_dir), "tokenizer": str(qwen3_dir)}
    a = load_workload(dict(base, num_requests=300, seed=7, max_input_tokens=20, max_output_tokens=64))
    b = load_workload(dict(base, num_requests=300, seed=7, max_input_tokens=20, max_output_tokens=64, cache=False))
    c = load_workload(dict(base, num_requests=300, seed=8, max_input_tokens=20, max_output_tokens=64, cache=False))
    assert [r.id for r in a.requests] == [r.id for r in b.requests] != [r.id for r in c.requests]
    assert len(a) == 300 and max(a.input_lens) <= 20 and max(a.output_lens) <= 64
    full = {r.id: r for r in alpaca_full.requests}
    n_trunc = sum(full[r.id].output_len > 64 for r in a.requests)
    assert a.num_truncated == n_trunc > 0 and workload_stats(a)["truncated"] == n_trunc
    assert "biased" in workload_stats(a)["note"]
    assert all(full[r.id].output_len == r.output_len for r in a.requests if not r.truncated)
    too_long = [s for s in a.skipped if s.reason.startswith("input_len")]
    assert too_long and all(full[str(s.index)].input_len > 20 for s in too_long)
    first = load_workload(dict(base, num_requests=10, cache=False))
    assert [r.id for r in first.requests] == [r.id for r in alpaca_full.requests[:10]]


def test_sharegpt_sample_and_prompt_only(data_dir, qwen3_dir):
    wl = load_workload({"dataset": "sharegpt", "split": "sample", "data_dir": str(data_dir), "tokenizer": "qwen3"})
    raw = json.loads((data_dir / "sharegpt" / "sharegpt_sample.json").read_text())
    assert len(wl) == len(raw) == 50 and not wl.skipped
    assert wl.requests[0].prompt == raw[0]["conversations"][0]["value"]
    # the file's own counts (another tokenizer) are within 25% of Qwen3's on the prompt side
    ratio = np.mean([r.input_len for r in wl.requests]) / np.mean([x["prompt_tokens"] for x in raw])
    assert 0.75 < ratio < 1.25
    v3 = {"dataset": "sharegpt", "split": "ShareGPT_V3_filtered_1000", "data_dir": str(data_dir),
          "tokenizer": "qwen3", "num_requests": 40}
    with pytest.raises(DataError, match="no gpt reply"):
        load_workload(v3)   # the ml-energy file has human turns only
    with pytest.raises(ValueError, match="max_output_tokens"):
        load_workload(dict(v3, keep_prompt_only=True))
    kept = load_workload(dict(v3, keep_prompt_only=True, max_output_tokens=128))
    assert len(kept) == 40 and set(kept.output_lens) == {128}
    s = workload_stats(kept)
    assert s["prompt_only"] == 40 and s["p"] is None


def test_llama2_tokenizer_and_chat_template(data_dir):
    spec = {"dataset": "alpaca", "data_dir": str(data_dir), "num_requests": 20, "cache": False}
    ll = load_workload(dict(spec, tokenizer="llama-2"))
    assert all(r.prompt_ids[0] == 1 for r in ll.requests)          # Llama-2 BOS
    assert ll.meta["tokenizer"] == "llama-2-7b"
    ll_chat = load_workload(dict(spec, tokenizer="llama-2", chat_template=True))
    assert ll_chat.meta["chat_template"] is False and "none" in ll_chat.meta["chat_template_note"]
    q = load_workload(dict(spec, tokenizer="qwen3"))
    qc = load_workload(dict(spec, tokenizer="qwen3", chat_template=True))
    assert qc.meta["chat_template"] is True
    for a, b in zip(q.requests, qc.requests):
        assert b.prompt_ids[0] == 151644 and b.input_len > a.input_len   # <|im_start|>user ... assistant
        assert b.output_len == a.output_len


def test_longbench_v2_markdown(data_dir):
    wl = load_workload({"dataset": "longbench", "split": "short", "data_dir": str(data_dir), "tokenizer": "qwen3",
                        "num_requests": 2, "seed": 3, "cache": False})
    assert len(wl) == 2
    for r in wl.requests:
        assert "<text>" in r.prompt and "(D)" in r.prompt and r.input_len > 5000
        assert r.output_len < 16
    assert len(wl.meta["files"]) == 180
    with pytest.raises(DataError, match="outside split 'long'"):
        load_workload({"dataset": "longbench", "split": "long", "data_dir": str(data_dir), "tokenizer": "qwen3"})


def test_cache_hit_key_and_atomic_file(tmp_path, data_dir, qwen3_dir, monkeypatch):
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "c"))
    rows = json.loads((data_dir / "alpaca" / "alpaca_5000.json").read_text())[:30]
    f = tmp_path / "alpaca_small.json"
    f.write_text(json.dumps(rows))
    spec = {"dataset": "alpaca", "path": str(f), "tokenizer": str(qwen3_dir)}
    a = load_workload(spec)
    assert a.meta["cache"]["hit"] is False
    b = load_workload(dict(spec, tokenizer="qwen3", data_dir=str(data_dir)))   # same tokenizer by another name
    assert b.meta["cache"]["hit"] is True
    assert [(r.id, r.prompt_ids, r.output_len, r.prompt) for r in a.requests] == \
           [(r.id, r.prompt_ids, r.output_len, r.prompt) for r in b.requests]
    assert not list((tmp_path / "c").glob("*.tmp"))
    rows[0]["output"] += " more words here"
    f.write_text(json.dumps(rows))                                      # content changed -> new key
    c = load_workload(spec)
    assert c.meta["cache"]["hit"] is False and c.requests[0].output_len > a.requests[0].output_len
    assert load_workload(dict(spec, seed=1)).meta["cache"]["hit"] is False
    entry = c.meta["cache"]["path"]
    Path(entry).write_bytes(b"garbage")                                # a corrupt entry is ignored, rewritten
    d = load_workload(spec)
    assert d.meta["cache"]["hit"] is False and [r.input_len for r in d.requests] == [r.input_len for r in c.requests]
    assert load_workload(spec).meta["cache"]["hit"] is True
