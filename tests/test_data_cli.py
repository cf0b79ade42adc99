"""``pdlib data stats`` end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pdlib.cli import main
from pdlib.data import load_workload, workload_stats

KEYS = {"count", "input_mean", "input_median", "input_p95", "input_max", "output_mean", "output_median",
        "output_p95", "output_max", "p", "skipped", "truncated"}


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "cache"))


def _run(capsys, *argv):
    rc = main(["data", "stats", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_stats_json_trace(capsys, data_dir):
    rc, out, _ = _run(capsys, "--dataset", "azure-conv", "--data-dir", str(data_dir), "--json")
    assert rc == 0
    d = json.loads(out)
    assert KEYS <= set(d)
    ref = workload_stats(load_workload({"dataset": "azure-conv", "data_dir": str(data_dir)}))
    assert d == json.loads(json.dumps(ref))


def test_stats_text_dataset_with_filters(capsys, data_dir, qwen3_dir):
    argv = ["--dataset", "alpaca", "--tokenizer", str(qwen3_dir), "--data-dir", str(data_dir), "--num-requests",
            "120", "--seed", "5", "--max-input-tokens", "30", "--max-output-tokens", "40"]
    rc, out, _ = _run(capsys, *argv, "--json")
    d = json.loads(out)
    assert rc == 0 and d["count"] == 120 and d["output_max"] <= 40 and d["truncated"] > 0 and d["skipped"] > 0
    assert d["p"] == pytest.approx(1 / d["output_mean"]) and d["tokenizer"] == "qwen3-1.7b"
    rc, out, _ = _run(capsys, *argv)
    assert rc == 0 and any(line.split()[:1] == ["output_p95"] for line in out.splitlines())


def test_stats_errors_are_one_line(capsys, tmp_path, qwen3_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, out, err = _run(capsys, "--dataset", "lmsys", "--tokenizer", str(qwen3_dir), "--data-dir", str(tmp_path))
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1 and "lmsys/lmsys-chat-1m" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    rc, _, err = _run(capsys, "--dataset", "alpaca", "--tokenizer", str(qwen3_dir), "--path", str(bad))
    assert rc == 2 and str(bad) in err and "malformed JSON" in err
    rc, _, err = _run(capsys, "--dataset", "alpaca", "--data-dir", str(tmp_path))
    assert rc == 2 and "tokenizer" in err


def test_module_entry_point(data_dir, tmp_path):
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "pdlib", "data", "stats", "--dataset", "burstgpt", "--data-dir",
                        str(data_dir), "--json"], check=False, capture_output=True, text=True, cwd=root, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "PDLIB_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["count"] == 383 and d["skipped"] == 17


def test_stats_prints_skip_reasons_and_the_ignored_tokenizer(capsys, data_dir):
    rc, out, _ = _run(capsys, "--dataset", "burstgpt", "--data-dir", str(data_dir), "--tokenizer", "qwen3")
    rows = {line.split("  ")[0].strip(): line.split("  ")[-1].strip() for line in out.splitlines()}
    assert rc == 0 and rows["skipped"] == "17" and rows["skipped: Request tokens: zero tokens"] == "17"
    assert rows["tokenizer"] == "counts from the trace" and "'qwen3' not used (ignored)" in rows["tokenizer_note"]
    assert "skip_reasons" not in rows


def test_stats_and_lengths_of_a_jsonl_trace(capsys, data_dir, tmp_path):
    f = tmp_path / "mooncake.jsonl"
    with open(data_dir / "traces" / "AzureLLMInferenceTrace_code.csv", newline="") as src:
        import csv
        rows = list(csv.DictReader(src))[:50]
    f.write_text("".join(json.dumps({"timestamp": i, "in": int(r["ContextTokens"]), "out": int(r["GeneratedTokens"])})
                         + "\n" for i, r in enumerate(rows)) + "\n")
    rc, out, err = _run(capsys, "--dataset", "trace", "--path", str(f), "--json")
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1
    assert "no input-length column" in err and "'timestamp', 'in', 'out'" in err and "--input-col" in err
    rc, out, _ = _run(capsys, "--dataset", "trace", "--path", str(f), "--input-col", "in", "--output-col", "out",
                      "--json")
    d = json.loads(out)
    assert rc == 0 and d["dataset"] == "mooncake" and d["count"] == 50 and d["skip_reasons"] == {"line: blank": 1}
    assert d["output_mean"] == pytest.approx(sum(int(r["GeneratedTokens"]) for r in rows) / 50)
    lens = tmp_path / "lens.csv"
    assert main(["data", "lengths", "--dataset", "trace", "--path", str(f), "--input-col", "in", "--output-col", "out",
                 "-o", str(lens)]) == 0
    got = capsys.readouterr().out
    assert '{"line: blank": 1}' in got and "counts from the trace" in got
    assert lens.read_text().splitlines()[1] == f"{rows[0]['ContextTokens']},{rows[0]['GeneratedTokens']}"
