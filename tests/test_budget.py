"""pdlib.hardware, pdlib.models (+ models.yaml) and pdlib.budget against the real configs."""
from __future__ import annotations

import json
import math

import pytest

from pdlib import budget as B
from pdlib import models as M
from pdlib.hardware import GPUS, GiB, get_gpu, gpu_table

ARCH_KEYS = ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size",
             "intermediate_size", "vocab_size", "tie_word_embeddings", "model_type")


def _config(data_dir, name):
    return json.loads((data_dir / "models" / name / "config.json").read_text())


# --------------------------------------------------------------------------- models.yaml


@pytest.mark.parametrize("name", ["qwen3-0.6b", "qwen3-1.7b", "qwen2.5-7b-instruct", "llama-2-7b"])
def test_builtin_numbers_match_the_published_config(data_dir, name):
    entry = M.builtin_models()[name]
    cfg = _config(data_dir, entry["config_dir"])
    for k in ARCH_KEYS:
        assert entry[k] == cfg[k], (name, k)
    assert entry["head_dim"] == cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    assert entry["num_parameters"] == M.count_parameters(cfg)
    spec = M.get_model(name)
    assert spec.kv_bytes_per_token("bf16") == 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * entry["head_dim"] * 2


def test_parameter_counts_equal_transformers_meta_build(data_dir):
    """count_parameters == what transformers builds (meta device, no memory), for every built-in."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    for name, entry in M.builtin_models().items():
        cfg = _config(data_dir, entry["config_dir"])
        assert M.count_parameters_transformers(cfg) == entry["num_parameters"], name
    assert M.builtin_models()["qwen3-1.7b"]["num_parameters"] == 1_720_574_976    # data README, H100


def test_model_by_path_folder_and_file(qwen3_dir, data_dir):
    by_dir = M.get_model(qwen3_dir)
    by_file = M.get_model(qwen3_dir / "config.json")
    builtin = M.get_model("qwen3-1.7b")
    for spec in (by_dir, by_file):
        assert spec.name == "qwen3-1.7b" and spec.source.startswith("path:")
        assert spec.num_parameters == builtin.num_parameters
        assert spec.kv_bytes_per_token() == builtin.kv_bytes_per_token() == 114_688
    assert M.get_model(data_dir / "models" / "qwen2.5-7b-instruct").weights_bytes() == 7_615_616_512 * 2


def test_model_path_errors_name_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*config.json"):
        M.get_model(tmp_path / "empty")
    bad = tmp_path / "bad" / "config.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad/config.json.*not valid JSON"):
        M.get_model(bad.parent)
    bad.write_text(json.dumps({"model_type": "qwen3", "hidden_size": 64}))
    with pytest.raises(ValueError, match="config.json.*no 'num_attention_heads'"):
        M.get_model(bad)


def test_unknown_name_and_offline_hub_say_what_to_pass(monkeypatch):
    with pytest.raises(ValueError, match="valid names: qwen3-0.6b"):
        M.get_model("gpt-17")
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not reachable.*built-in name.*config.json"):
        M.get_model("Qwen/Qwen3-235B-A22B-not-cached")


# --------------------------------------------------------------------------- hardware


def test_gpu_table_has_the_cards_with_their_numbers():
    need = {"rtx4080": (16, 716.8), "rtx4080-laptop": (12, 432.0), "rtx4080-12gb-hypothetical": (12, 716.8),
            "rtx4090": (24, 1008.0), "l40s": (48, 864.0), "a100-40gb": (40, 1555.0), "a100-80gb": (80, 2039.0),
            "h100-80gb": (80, 3350.0), "h200": (141, 4800.0)}
    for key, (gib, gbps) in need.items():
        g = GPUS[key]
        assert g.memory_bytes == gib * GiB and g.bandwidth_Bps == pytest.approx(gbps * 1e9), key
    assert [k for k, g in GPUS.items() if g.hypothetical] == ["rtx4080-12gb-hypothetical"]
    assert get_gpu("H100").measured_copy_Bps == 3.02e12
    assert len(gpu_table()) == len(GPUS)
    with pytest.raises(ValueError, match="valid names: rtx4080, rtx4080-laptop"):
        get_gpu("rtx4080-super-duper")


def test_decode_floor_matches_the_design_reference():
    """Design brief: Qwen3-1.7B bf16 weights 3.442 GB, 3.02 TB/s copy -> ~1.14 ms per decode step."""
    r = B.gpu_budget("h100", "qwen3-1.7b")
    assert r["weights_bytes"] == 3_441_149_952
    assert r["decode_floor_measured_copy_ms"] == pytest.approx(1.14, abs=0.005)


# --------------------------------------------------------------------------- budget


def test_seed004_stated_case_reproduces_the_seed():
    s = B.seed004_stated()
    assert round(s["eta"]) == 42_667 and round(s["L0"]) == 4_267
    assert (s["b_mem"], s["b_mem_p95"]) == (76, 38)
    assert s["kv_bytes_per_token"] == 196_608 and s["hypothetical_gpu"]
    # its latency model never binds at D_SLA = 1 s: T(b, L) < a + b_*L*(1+g) = 0.27 s at L = 1000
    assert s["b_SLA"] == s["b_SLA_p95"] == 128 and s["b_target"] == 76


def test_corrected_rtx4080_cases_by_hand():
    df = B.seed004_comparison()
    assert df.index[0] == "seed 004 as stated" and len(df) == 4
    weights = 1_720_574_976 * 2
    for case, gib in (("corrected: RTX 4080 desktop 16 GB", 16), ("corrected: RTX 4080 Laptop 12 GB", 12)):
        row = df.loc[case]
        eta = (gib * GiB - weights - GiB) / 114_688
        assert row["kv_bytes_per_token"] == 114_688
        assert row["eta"] == pytest.approx(eta)
        assert row["L0"] == pytest.approx(0.1 * eta)
        assert row["b_mem"] == math.floor(0.9 * eta / 500) and row["b_mem_p95"] == math.floor(0.9 * eta / 1000)
        assert row["b_target"] == min(row["b_mem"], row["b_SLA"], 128)
    desk = df.loc["corrected: RTX 4080 desktop 16 GB"]
    assert (desk["b_mem"], desk["b_mem_p95"]) == (198, 99)


def test_b_SLA_binds_with_a_tight_sla_and_a_fitted_latency():
    import numpy as np

    from pdlib import theory as T
    b, L = np.meshgrid([1, 2, 4, 8, 16, 32], [128, 256, 512, 1024, 2048])
    fit = T.fit_T_latency(b, L, 0.010 + 0.0002 * L * (1 + 0.3 * (b - 1) / b))
    r = B.gpu_budget("rtx4080", "qwen3-1.7b", mean_tokens=3000, p95_tokens=None, sla_s=0.75, latency=fit)
    assert r["b_SLA"] == 4 and r["b_target"] == 4           # hand: b <= 4.5 (see test_theory)
    assert r["latency_source"].startswith("fit")
    assert "b_mem_p95" not in r


def test_budget_table_covers_every_gpu_and_model():
    df = B.budget_table()
    assert len(df) == len(GPUS) * len(M.model_names())
    no = df[~df["fits"]]
    assert set(zip(no["gpu"], no["model"])) >= {("rtx4080-laptop", "qwen2.5-7b-instruct")}
    assert no["reason"].str.contains("exceeds M_max").all()
    ok = df[df["fits"]]
    assert (ok["eta"] > 0).all() and (ok["b_target"] <= 128).all()


def test_budget_rejects_bad_inputs():
    with pytest.raises(ValueError, match="overhead_bytes must be"):
        B.gpu_budget("rtx4080", "qwen3-1.7b", overhead_bytes=-1)
    with pytest.raises(ValueError, match="mu must be finite and > 0"):
        B.gpu_budget("rtx4080", "qwen3-1.7b", mean_tokens=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        B.gpu_budget("rtx4080", "qwen3-1.7b", dtype="int3")
    with pytest.raises(ValueError, match="latency must have keys"):
        B.gpu_budget("rtx4080", "qwen3-1.7b", latency={"a": 0.01})


# --------------------------------------------------------------------------- display tables, notebook 04


def test_display_tables_and_budget_result():
    row = B.budget_rows("rtx4080", "qwen3-1.7b")
    assert row.index.tolist() == [("rtx4080", "qwen3-1.7b")] and row["b_mem"].iloc[0] == 198
    assert row["M_max_GB"].iloc[0] == pytest.approx(round(16 * GiB / 1e9, 3))
    assert "error" in B.budget_rows("rtx4080-laptop", "qwen2.5-7b-instruct", dtype="fp32")
    table = B.seed_vs_corrected()
    assert len(table) == 5 and table.index[-1] == "chosen: rtx4080 x qwen3-1.7b (fp16)"
    from pdlib.experiments.gpu_budget import budget_experiment
    exp = budget_experiment()
    js = exp.to_json()
    assert list(js) == ["seed_vs_corrected"] and js["seed_vs_corrected"][0]["kv_bytes_per_token"] == 196608
    assert json.loads(json.dumps(js, allow_nan=False)) == js
    assert len(exp.all_pairs) == len(GPUS) * len(M.model_names())
    from pdlib.report.plots import budget_figure
    ax = budget_figure(exp.seed_vs_corrected).axes[0]
    assert "(requests)" in ax.get_xlabel()
