"""``python -m pdlib kstar|memory|budget`` run as subprocesses; values checked against pdlib.theory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdlib import budget as B
from pdlib import theory as T

ROOT = Path(__file__).resolve().parents[1]


def pdlib(*args, check=True):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pdlib", *map(str, args)], check=False, cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def pdlib_json(*args):
    r = pdlib(*args, "--json")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def test_kstar_json_matches_theory():
    out = pdlib_json("kstar", "--N", 64, "--p", 0.005, "--alpha-p", 0.05, "--alpha-d", 0.01, "--beta-d", 0.0001)
    r = T.k_star(64, 0.005, 0.05, 0.01, 0.0001)
    assert out["k_star"] == r.k == 13
    assert out["fallback_used"] is False
    assert out["throughput_at_k_star"] == pytest.approx(r.throughput)
    assert out["theta_star"] == pytest.approx(T.theta_star(0.005, 0.05, 0.01))
    assert out["theta_star_exact"] == pytest.approx(T.theta_star(0.005, 0.05, 0.01, exact=True))
    assert {"N", "p", "alpha_p", "alpha_d", "beta_d", "beta_p", "mean_input"} <= set(out)


def test_kstar_with_prefill_slope_and_fallback():
    out = pdlib_json("kstar", "--N", 32, "--p", 0.01, "--alpha-p", 0.05, "--alpha-d", 0.01, "--beta-d", 1e-4,
                     "--beta-p", 2e-5, "--mean-input", 300)
    assert out["throughput_at_k_star"] == pytest.approx(
        float(T.throughput(out["k_star"], 32, 0.01, 0.05, 2e-5, 0.01, 1e-4, 300)))
    fb = pdlib_json("kstar", "--N", 10, "--p", 0.5, "--alpha-p", 1e6, "--alpha-d", 0.01, "--beta-d", 0)
    assert fb["fallback_used"] is True and fb["k_star"] == 2 and "N//5" in fb["note"]


def test_memory_json_matches_theory():
    out = pdlib_json("memory", "--N", 64, "--k", 12, "--p", 0.0067, "--mean-input", 300)
    th = 12 / 64
    assert out["D"] == pytest.approx(T.D(th, 0.0067, 300))
    assert out["E_X0"] == pytest.approx(T.E_X0(64, th, 0.0067, 300))
    assert out["E_X0_seed000_misprint"] < out["E_X0"]
    assert out["kappa"] == pytest.approx(1 / (0.0067 ** 2 * 300))
    assert out["E_Xmax"] == pytest.approx(out["E_X0"] + out["kappa"])
    assert out["drift"] == pytest.approx(-64 * 0.0067 * 300)
    assert out["variance"] == pytest.approx(T.variance(64, 0.0067, 300))
    assert out["variance_approx"] == pytest.approx(2 * 64 / 0.0067)
    assert out["oom_bound_at_kappa"] == pytest.approx(T.oom_bound(out["kappa"], out["drift"], out["variance"]))
    assert "N_star_prop3" not in out


def test_memory_with_capacity_gives_N_star():
    out = pdlib_json("memory", "--N", 64, "--k", 12, "--p", 0.0067, "--mean-input", 300, "--var-input", 2500,
                     "--capacity-tokens", 110429, "--eps", 0.01)
    th = 12 / 64
    assert out["variance"] == pytest.approx(T.variance(64, 0.0067, 300, 2500))
    assert out["N_star_prop3"] == T.N_star_prop3(110429, th, 0.0067, 300, 0.01)
    assert out["N_star_clt"] == T.N_star_clt(110429, th, 0.0067, 300, 0.01, 2500)


def test_budget_json_matches_budget_module():
    out = pdlib_json("budget", "--gpu", "rtx4080", "--model", "qwen3-1.7b", "--dtype", "fp16", "--mean-tokens", 500)
    ref = B.gpu_budget("rtx4080", "qwen3-1.7b", dtype="fp16", mean_tokens=500)
    assert out["kv_bytes_per_token"] == 114_688
    for key in ("eta", "L0", "b_mem", "b_mem_p95", "b_SLA", "b_target", "M_max_bytes", "M_model_bytes"):
        assert out[key] == pytest.approx(ref[key]), key
    assert out["gpu"] == "rtx4080" and out["model"] == "qwen3-1.7b" and out["mean_tokens"] == 500


def test_budget_accepts_a_config_folder(qwen3_dir):
    out = pdlib_json("budget", "--gpu", "h100", "--model", qwen3_dir)
    assert out["num_parameters"] == 1_720_574_976 and out["kv_bytes_per_token"] == 114_688
    assert out["dtype"] == "bfloat16"


def test_budget_seed004_side_by_side():
    out = pdlib_json("budget", "--seed004")
    cases = {c["case"]: c for c in out["cases"]}
    seed = cases["seed 004 as stated"]
    assert round(seed["eta"]) == 42667 and seed["b_mem"] == 76 and seed["b_mem_p95"] == 38
    assert seed["kv_bytes_per_token"] == 196_608
    assert cases["corrected: RTX 4080 desktop 16 GB"]["kv_bytes_per_token"] == 114_688


def test_budget_lists_and_errors():
    gpus = pdlib_json("budget", "--gpu", "list")["rows"]
    assert {"rtx4080", "rtx4080-laptop", "rtx4080-12gb-hypothetical", "h100-80gb"} <= {g["gpu"] for g in gpus}
    models = pdlib_json("budget", "--model", "list")["rows"]
    assert {m["name"] for m in models} >= {"qwen3-0.6b", "qwen3-1.7b", "qwen2.5-7b-instruct", "llama-2-7b"}
    r = pdlib("budget", "--gpu", "rtx9999", check=False)
    assert r.returncode == 2 and "rtx4080-laptop" in r.stderr and "h200" in r.stderr
    r = pdlib("budget", "--model", "no-such-model", check=False)
    assert r.returncode == 2 and "qwen3-1.7b" in r.stderr and "config.json" in r.stderr


def test_invalid_input_is_one_line_exit_2():
    r = pdlib("kstar", "--N", 0, "--p", 0.01, "--alpha-p", 0.05, "--alpha-d", 0.01, "--beta-d", 1e-4, check=False)
    assert r.returncode == 2 and "N must be an integer >= 1" in r.stderr and "Traceback" not in r.stderr
    r = pdlib("memory", "--N", 64, "--k", 64, "--p", 0.01, "--mean-input", 300, check=False)
    assert r.returncode == 2 and "--k must be" in r.stderr
    r = pdlib("memory", "--N", 64, "--k", 8, "--p", 1.5, "--mean-input", 300, check=False)
    assert r.returncode == 2 and "p must be in (0, 1]" in r.stderr


def test_human_output_is_an_aligned_table():
    r = pdlib("kstar", "--N", 64, "--p", 0.005, "--alpha-p", 0.05, "--alpha-d", 0.01, "--beta-d", 0.0001)
    lines = r.stdout.strip().splitlines()
    rows = dict(line.split(None, 1) for line in lines)
    assert rows["k_star"].strip() == "13"
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
    assert len(starts) == 1, "values not aligned in one column"
