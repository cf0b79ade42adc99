"""pdlib profile-memory / compare-estimates end to end on CPU, and the per-layer table."""
from __future__ import annotations

import copy
import json

import pytest

from pdlib.cli import main
from pdlib.memprof import compare_estimates, theory_estimates

pytest.importorskip("torch")
pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def run_cli(tiny_qwen3_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("memprof")
    out, table = d / "prof.json", d / "layers.csv"
    rc = main(["profile-memory", "--model", str(tiny_qwen3_dir), "--prompt", "Where does the memory go?",
               "--max-tokens", "3", "--batch-size", "3", "--dtype", "float32", "--device", "cpu",
               "--repeats", "1", "--per-layer", str(table), "--output", str(out)])
    assert rc == 0
    return json.loads(out.read_text()), table


def test_profile_memory_cli_writes_the_json(run_cli):
    prof, table = run_cli
    mi = prof["model_info"]
    assert mi["batch_size"] == 3 and mi["generated_length"] == 3 and mi["dtype"] == "float32"
    assert mi["prompt_length"] == len(b"Where does the memory go?")     # no tokenizer: bytes
    assert prof["per_layer"]["path"] == str(table) and prof["per_layer"]["sorted_by"] == "self_cpu_memory_bytes"


def test_per_layer_table_written_and_sorted(run_cli):
    from pdlib.memprof.layers import read_table
    prof, table = run_cli
    rows = read_table(table)
    assert len(rows) == prof["per_layer"]["rows"] > 10
    key = [r["self_cpu_memory_bytes"] for r in rows]
    assert key == sorted(key, reverse=True)
    mods = {r["name"]: r for r in rows if r["kind"] == "module"}
    assert {"model.layers.0.mlp.gate_proj", "model.layers.1.self_attn", "lm_head"} <= set(mods)
    # gate_proj's output is B x P x intermediate fp32, once for the prefill pass and B x 1 x I per decode
    P = prof["model_info"]["prompt_length"]
    g = mods["model.layers.0.mlp.gate_proj"]
    assert g["calls"] == 3
    assert g["self_allocated_bytes"] == 3 * (P + 2) * 256 * 4
    assert any(r["kind"] == "op" and r["name"].startswith("aten::") for r in rows)


def test_compare_estimates_numbers(run_cli, capsys):
    prof, _ = run_cli
    res = compare_estimates(prof)
    rows = {r["component"]: r for r in res["rows"]}
    assert rows["model_weights_gb"]["error_pct"] == pytest.approx(0, abs=1e-9)
    assert rows["model_weights_gb"]["recommendation"].startswith("keep")
    S = prof["model_info"]["total_sequence_length"]
    # calculator: S tokens; cache: S-1 tokens (generate never feeds back the last token)
    assert rows["kv_cache_gb"]["error_pct"] == pytest.approx(100 / (S - 1))
    est = theory_estimates(prof)
    B, P, e = 3, prof["model_info"]["prompt_length"], 4
    c_act = 2 * 256 + 4 * 128
    assert est["coefficients"]["act_bytes_per_token_elem"] == c_act
    assert est["values_gb"]["activations_gb"] * 1e9 == pytest.approx(B * P * c_act * e + B * 2048 * 4)
    a = rows["activations_gb"]
    assert a["error_pct"] == pytest.approx((a["calculated_gb"] - a["measured_gb"]) / a["measured_gb"] * 100)
    if abs(a["error_pct"]) > 5:
        f = a["measured_gb"] / a["calculated_gb"]
        assert f"-> {c_act * f:.4g} elements/token" in a["recommendation"]
    tot = rows["total_gb"]
    assert tot["calculated_gb"] == pytest.approx(sum(rows[c]["calculated_gb"] for c in
                                                     ("model_weights_gb", "kv_cache_gb", "activations_gb",
                                                      "framework_overhead_gb")))


def test_compare_estimates_external_calculator_and_negative_overhead(run_cli):
    prof, _ = run_cli
    w = prof["memory_breakdown"]["model_weights_gb"]
    res = compare_estimates(prof, calc_weights=2 * w)
    r = res["rows"][0]
    assert r["calculator"] == "given" and r["error_pct"] == pytest.approx(100)
    assert "by 0.5" in r["recommendation"]
    neg = copy.deepcopy(prof)
    neg["memory_breakdown"]["framework_overhead_gb"] = -0.01
    o = {x["component"]: x for x in compare_estimates(neg)["rows"]}["framework_overhead_gb"]
    assert "negative" in o["recommendation"] and "0" in o["recommendation"]
    with pytest.raises(ValueError, match="calc-kv"):
        compare_estimates(prof, calc_kv=-1)


def test_compare_estimates_cli(run_cli, tmp_path, capsys):
    prof, _ = run_cli
    p = tmp_path / "p.json"
    p.write_text(json.dumps(prof))
    capsys.readouterr()
    assert main(["compare-estimates", str(p), "--calc-overhead", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["component"] for r in out["rows"]] == ["model_weights_gb", "kv_cache_gb", "activations_gb",
                                                    "framework_overhead_gb", "total_gb"]
    assert out["rows"][3]["calculated_gb"] == 0.5
    assert main(["compare-estimates", str(p)]) == 0
    text = capsys.readouterr().out
    assert "recommendation" in text and "kv_cache_gb" in text
    assert main(["compare-estimates", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"memory_breakdown": {}}))
    assert main(["compare-estimates", str(bad)]) == 2
    assert "model_info" in capsys.readouterr().err
