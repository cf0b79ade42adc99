"""Paired lengths on the command line (issue 14, items 3, 6, 7): ``pdlib data lengths``, the
``--lengths FILE.csv`` option of ``memory``, ``kstar`` and ``simulate`` against direct calls of
``pdlib.theory.lengths`` / ``pdlib.sim``, the validity flags, both online estimators of
``simulate --dynamic``, and bad lengths files (one-line errors naming the file and line)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pdlib import sim, theory
from pdlib.cli import main
from pdlib.cli.lengths import HEADER, read_lengths
from pdlib.data import load_workload, workload_stats
from pdlib.policy import DynamicKStar
from pdlib.theory import lengths as TL

FLAG_KEYS = {"name", "holds", "value", "threshold", "why"}
TIMES = ["--alpha-p", "0.05", "--alpha-d", "0.01", "--beta-d", "1e-4", "--beta-p", "2e-5"]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    o = capsys.readouterr()
    return rc, o.out, o.err


def run_json(capsys, *argv):
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def one_line_error(capsys, *argv, cmd=None):
    rc, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2 and not out and len(lines) == 1 and "Traceback" not in err, (argv, rc, err)
    assert lines[0].startswith(f"pdlib {cmd or argv[0]}"), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory, data_dir):
    """400 Azure-conversation requests written by ``pdlib data lengths``."""
    f = tmp_path_factory.mktemp("lengths") / "azure_conv.csv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PDLIB_CACHE_DIR", str(f.parent / "cache"))
        assert main(["data", "lengths", "--dataset", "azure-conv", "--data-dir", str(data_dir),
                     "--num-requests", "400", "-o", str(f)]) == 0
    return f


def _validity(flags):
    assert isinstance(flags, list) and flags
    for f in flags:
        assert set(f) == FLAG_KEYS and isinstance(f["holds"], bool)
    return {f["name"]: f for f in flags}


# --------------------------------------------------------------------------- data lengths


def test_data_lengths_alpaca(capsys, tmp_path, data_dir, qwen3_dir):
    spec = ["--dataset", "alpaca", "--tokenizer", str(qwen3_dir), "--data-dir", str(data_dir),
            "--num-requests", "300", "--seed", "3"]
    out_file = tmp_path / "sub" / "alpaca.csv"
    d = run_json(capsys, "data", "lengths", *spec, "-o", out_file)
    wl = load_workload({"dataset": "alpaca", "tokenizer": str(qwen3_dir), "data_dir": str(data_dir),
                        "num_requests": 300, "seed": 3})
    lines = out_file.read_text().splitlines()
    assert lines[0] == "input_tokens,output_tokens" == HEADER
    rows = np.array([[int(x) for x in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(rows[:, 0], wl.input_lens)
    np.testing.assert_array_equal(rows[:, 1], wl.output_lens)
    ref = workload_stats(wl)
    assert d["pairs"] == 300 == len(wl) and d["skipped"] == ref["skipped"]
    assert d["skip_reasons"] == ref["skip_reasons"] and d["truncated"] == ref["truncated"]
    assert d["p"] == pytest.approx(1 / wl.output_lens.mean()) and d["tokenizer"] == "qwen3-1.7b"
    assert [p.name for p in out_file.parent.iterdir()] == ["alpaca.csv"]      # atomic: no temp file left
    back = read_lengths(out_file)
    np.testing.assert_array_equal(back.inputs, wl.input_lens)
    # the human form prints the skip reasons like `data stats`
    rc, out, _ = run(capsys, "data", "lengths", *spec, "-o", out_file)
    assert rc == 0 and re.search(r"^skip_reasons\s+\{", out, re.MULTILINE) and re.search(r"^pairs\s+300$", out, re.MULTILINE)


def test_data_lengths_trace(capsys, tmp_path, data_dir):
    f = tmp_path / "burst.csv"
    d = run_json(capsys, "data", "lengths", "--dataset", "burstgpt", "--data-dir", data_dir, "-o", f)
    wl = load_workload({"dataset": "burstgpt", "data_dir": str(data_dir)})
    assert d["pairs"] == 383 and d["skipped"] == 17 and sum(d["skip_reasons"].values()) == 17
    lens = read_lengths(f)
    np.testing.assert_array_equal(lens.inputs, wl.input_lens)
    np.testing.assert_array_equal(lens.outputs, wl.output_lens)
    assert d["input_mean"] == pytest.approx(lens.mu_L) and d["p"] == pytest.approx(lens.p)


def test_data_lengths_errors(capsys, tmp_path, data_dir, qwen3_dir):
    line = one_line_error(capsys, "data", "lengths", "--dataset", "burstgpt", "--data-dir", data_dir,
                          "-o", tmp_path, cmd="data")
    assert "-o" in line and "folder" in line
    line = one_line_error(capsys, "data", "lengths", "--dataset", "alpaca", "--data-dir", tmp_path,
                          "-o", tmp_path / "x.csv", cmd="data")
    assert "tokenizer" in line and not (tmp_path / "x.csv").exists()
    rc, _, err = run(capsys, "data", "lengths", "--dataset", "burstgpt", "--data-dir", data_dir)
    assert rc == 2 and "-o" in err


# --------------------------------------------------------------------------- memory / kstar --lengths


def test_memory_lengths_matches_the_theory(capsys, trace_file):
    lens = read_lengths(trace_file)
    d = run_json(capsys, "memory", "--N", 64, "--k", 12, "--lengths", trace_file)
    ref = TL.memory_model_lengths(64, 12, lens.inputs, lens.outputs, seed=0)
    assert d["E_X0_lengths"] == pytest.approx(ref.E_X0)
    assert d["E_Xmax_lengths"] == pytest.approx(ref.E_Xmax)
    assert d["E_supY_lengths"] == pytest.approx(ref.E_supY)
    # the paper's numbers from the same file's p and mu_L
    p, mu = 1 / lens.outputs.mean(), lens.inputs.mean()
    assert d["p"] == pytest.approx(p) and d["mean_input"] == pytest.approx(mu)
    assert d["E_X0"] == pytest.approx(theory.E_X0(64, 12 / 64, p, mu)) == pytest.approx(ref.paper_E_X0)
    assert d["kappa"] == pytest.approx(theory.kappa(p, mu))
    assert d["lengths_pairs"] == 400 and d["lengths_file"] == str(trace_file)
    flags = _validity(d["validity"])
    assert set(flags) == {"one_completion_per_step", "short_inputs", "geometric_outputs", "inputs_independent"}
    assert flags["one_completion_per_step"]["value"] == pytest.approx(64 * p)
    assert {f.name: f.holds for f in ref.paper_validity} == {k: f["holds"] for k, f in flags.items()}
    assert set(_validity(d["validity_lengths"])) == {"fixed_point_converged", "few_single_token", "enough_pairs"}
    # without --lengths: the paper's flags only
    d0 = run_json(capsys, "memory", "--N", 64, "--k", 12, "--p", 0.0067, "--mean-input", 300)
    assert set(_validity(d0["validity"])) == {"one_completion_per_step", "short_inputs"}
    assert "validity_lengths" not in d0 and "E_X0_lengths" not in d0


def test_kstar_lengths_matches_the_theory(capsys, trace_file):
    lens = read_lengths(trace_file)
    d = run_json(capsys, "kstar", "--N", 32, *TIMES, "--lengths", trace_file)
    ref = TL.k_star_lengths(32, 0.05, 2e-5, 0.01, 1e-4, lens.inputs, lens.outputs)
    paper = theory.k_star(32, lens.p, 0.05, 0.01, 1e-4, 2e-5, lens.mu_L)
    assert d["k_star"] == paper.k == ref.paper_k
    assert d["k_star_lengths"] == ref.k and d["throughput_at_k_star_lengths"] == pytest.approx(ref.throughput)
    assert d["throughput_lengths_at_k_star"] == pytest.approx(ref.throughput_at_paper_k)
    assert d["k_star_throughput_ratio_lengths"] == pytest.approx(ref.throughput_at_paper_k / ref.throughput)
    assert d["k_star_throughput_ratio_lengths"] <= 1 + 1e-12
    direct = TL.throughput_lengths(paper.k, 32, 0.05, 2e-5, 0.01, 1e-4, lens.inputs, lens.outputs).throughput
    assert d["throughput_lengths_at_k_star"] == pytest.approx(direct)
    assert d["throughput_at_k_star"] == pytest.approx(paper.throughput)
    assert _validity(d["validity"])["inputs_independent"]["threshold"] == 0.1
    _validity(d["validity_lengths"])


def test_human_output_has_an_aligned_assumptions_block(capsys, trace_file):
    rc, out, _ = run(capsys, "kstar", "--N", 16, *TIMES, "--lengths", trace_file)
    assert rc == 0
    lines = out.strip().splitlines()
    rows = dict(line.split(None, 1) for line in lines)
    assert rows["assume:one_completion_per_step"].split()[0] in ("yes", "no")
    assert re.fullmatch(r"(yes|no)\s+value \S+ vs threshold 0\.1", rows["assume:inputs_independent"].strip())
    assert "assume_lengths:fixed_point_converged" in rows and "validity" not in rows
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
    assert len(starts) == 1
    assert [k for k in rows if k.startswith("assume")] == list(rows)[-7:]     # the block comes last


def test_constant_inputs_give_no_nan_flag(capsys, tmp_path):
    """Spearman rho of constant inputs is undefined: null in JSON, n/a in the table, never NaN."""
    f = tmp_path / "const.csv"
    L = np.random.default_rng(1).geometric(0.05, 300)
    f.write_text(HEADER + "\n" + "".join(f"100,{x}\n" for x in L))
    d = run_json(capsys, "memory", "--N", 16, "--k", 4, "--lengths", f)
    assert _validity(d["validity"])["inputs_independent"]["value"] is None
    rc, out, _ = run(capsys, "memory", "--N", 16, "--k", 4, "--lengths", f)
    assert rc == 0 and "n/a" in out and not re.search(r"\bnan\b", out, re.IGNORECASE)


def test_lengths_conflicts_and_bounds(capsys, trace_file, tmp_path):
    for cmd in (["memory", "--N", 64, "--k", 12], ["kstar", "--N", 32, *TIMES], ["simulate", "--N", 16]):
        line = one_line_error(capsys, *cmd, "--lengths", trace_file, "--p", 0.01)
        assert "--p cannot be combined with --lengths" in line
    line = one_line_error(capsys, "memory", "--N", 64, "--k", 12, "--lengths", trace_file, "--var-input", 1)
    assert "--var-input" in line
    assert "--p is required" in one_line_error(capsys, "memory", "--N", 64, "--k", 12, "--mean-input", 300)
    assert "--p is required" in one_line_error(capsys, "kstar", "--N", 32, *TIMES)
    assert "--mean-input is required" in one_line_error(capsys, "simulate", "--N", 16, "--p", 0.1)
    assert "--N must be <= 4096" in one_line_error(capsys, "memory", "--N", 5000, "--k", 12, "--lengths", trace_file)
    assert "--N must be >= 2" in one_line_error(capsys, "kstar", "--N", 1, *TIMES, "--lengths", trace_file)
    assert "--N must be <= 512" in one_line_error(capsys, "kstar", "--N", 600, *TIMES, "--lengths", trace_file)
    long = tmp_path / "long.csv"
    long.write_text(HEADER + "\n5,20000\n7,3\n")
    assert "lower --N" in one_line_error(capsys, "kstar", "--N", 100, *TIMES, "--lengths", long)
    ones = tmp_path / "ones.csv"
    ones.write_text(HEADER + "\n5,1\n7,1\n")
    assert "every output is 1 token" in one_line_error(capsys, "memory", "--N", 8, "--k", 2, "--lengths", ones)


# --------------------------------------------------------------------------- simulate --lengths


def test_simulate_lengths_draws_pairs(capsys, trace_file):
    lens = read_lengths(trace_file)
    d = run_json(capsys, "simulate", "--N", 32, "--k", 6, "--steps", 40000, "--seed", 2, "--lengths", trace_file)
    tm = theory.TimingModel(0.02, 2e-5, 0.008, 1e-4)
    res = sim.simulate(32, 6, input_lens=lens.inputs, output_lens=lens.outputs, steps=40000, seed=2, timing=tm,
                       record_steps=False, pairing="joint")
    from pdlib import metrics
    mem = metrics.memory_summary(res.columns, warmup="auto")
    assert d["pairing"] == "joint" and d["E_X0"] == pytest.approx(mem["E_X0"]) and d["cycles"] == mem["cycles"]
    assert d["p"] == pytest.approx(lens.p) and d["mean_input"] == pytest.approx(lens.mu_L)
    assert d["theory_E_X0"] == pytest.approx(theory.E_X0(32, 6 / 32, lens.p, lens.mu_L))
    m = TL.memory_model_lengths(32, 6, lens.inputs, lens.outputs, seed=0)
    assert d["theory_lengths_E_X0"] == pytest.approx(m.E_X0)
    assert abs(d["E_X0_lengths_err_pct"]) < 5        # the length-aware model tracks the paired simulation
    _validity(d["validity"])
    _validity(d["validity_lengths"])
    # pairs are kept: every simulated request's (input, output) is one of the file's pairs
    pairs = set(zip(lens.inputs.tolist(), lens.outputs.tolist()))
    got = set(zip(res.requests["input_len"].tolist(), res.requests["ref_output_len"].tolist()))
    assert got <= pairs


def test_simulate_dynamic_reports_both_estimators(capsys, trace_file):
    base = ["simulate", "--N", 16, "--p", 0.05, "--mean-input", 50, "--steps", 3000, "--dynamic", "--p0", 0.02]
    d = run_json(capsys, *base)
    assert d["p_estimator"] == "inverse_mean"
    for est in ("inverse_mean", "paper"):
        assert {f"online_requests_per_s_{est}", f"online_requests_per_s_steady_{est}", f"online_final_p_{est}",
                f"online_final_k_{est}"} <= set(d)
    assert d["online_requests_per_s_inverse_mean"] == d["requests_per_s"]
    assert d["online_final_p_inverse_mean"] == d["final_p_estimate"]
    # the same numbers as the policy run directly (same seed, same lengths)
    tm = theory.TimingModel(0.02, 2e-5, 0.008, 1e-4)
    for est in ("inverse_mean", "paper"):
        pol = DynamicKStar(16, tm, 0.02, ema_alpha=0.05, update_interval=32, mu_L=50, estimator=est)
        sim.simulate(16, pol, 0.05, input_lens=sim.GammaInt(50, 0), steps=3000, seed=0, timing=tm,
                     record_steps=False)
        assert d[f"online_final_p_{est}"] == pytest.approx(pol.p) and d[f"online_final_k_{est}"] == pol.k
    # geometric outputs: the paper's EMA of 1/L overshoots p, the default does not
    assert d["online_final_p_paper"] > 2 * 0.05 > d["online_final_p_inverse_mean"]
    dp = run_json(capsys, *base, "--p-estimator", "paper")
    assert dp["p_estimator"] == "paper" and dp["requests_per_s"] == dp["online_requests_per_s_paper"]
    assert dp["online_requests_per_s_inverse_mean"] == d["online_requests_per_s_inverse_mean"]
    assert "--p-estimator must be one of inverse_mean, paper" in one_line_error(capsys, *base, "--p-estimator", "x")
    dl = run_json(capsys, "simulate", "--N", 16, "--steps", 20000, "--dynamic", "--lengths", trace_file)
    assert dl["online_final_k_paper"] >= 1 and dl["pairing"] == "joint"


# --------------------------------------------------------------------------- bad lengths files

BAD_FILES = {  # name: (content, fragment the error must contain)
    "empty.csv": ("", "empty"),
    "blank.csv": ("\n \n\n", "empty"),
    "no_header.csv": ("12,34\n5,6\n", "line 1: missing header"),
    "wrong_header.csv": ("input,output\n12,34\n", "line 1: missing header"),
    "header_only.csv": (HEADER + "\n", "no requests"),
    "float.csv": (HEADER + "\n12,34\n1.5,6\n", "line 3: input_tokens must be an integer"),
    "negative.csv": (HEADER + "\n12,-3\n", "line 2: output_tokens must be an integer in 1..10^9"),
    "zero.csv": (HEADER + "\n0,3\n", "line 2: input_tokens"),
    "huge.csv": (HEADER + "\n12,1000000001\n", "line 2: output_tokens"),
    "very_long.csv": (HEADER + "\n12," + "9" * 5000 + "\n", "line 2: output_tokens"),
    "nan.csv": (HEADER + "\nnan,3\n", "line 2: input_tokens"),
    "text.csv": (HEADER + "\n12,abc\n", "line 2: output_tokens"),
    "one_col.csv": (HEADER + "\n12,3\n45\n", "line 3: expected 2 comma-separated counts"),
    "three_col.csv": (HEADER + "\n12,3,4\n", "line 2: expected 2"),
    "empty_cell.csv": (HEADER + "\n,3\n", "line 2: input_tokens"),
    "underscore.csv": (HEADER + "\n1_000,3\n", "line 2: input_tokens"),
    "unicode_digit.csv": (HEADER + "\n\u0661\u0662,3\n", "line 2: input_tokens"),
    "binary.csv": (b"input_tokens,output_tokens\n12,3\n\xff\xfe,1\n", "line 3: not UTF-8"),
    "later_blank.csv": (HEADER + "\n12,3\n\n4,x\n", "line 4: output_tokens"),
}
GOOD_FILES = {
    "crlf_bom.csv": ("\ufeff" + HEADER + "\r\n12,3\r\n40,25\r\n", [12, 40], [3, 25]),
    "spaces_blank_lines.csv": ("\n input_tokens , output_tokens \n 12 , 3\n\n007,25\n\n", [12, 7], [3, 25]),
}


@pytest.mark.parametrize("cmd", [["memory", "--N", 8, "--k", 2], ["kstar", "--N", 8, *TIMES],
                                 ["simulate", "--N", 8, "--steps", 500]])
def test_bad_lengths_files(capsys, tmp_path, cmd):
    for name, (body, frag) in BAD_FILES.items():
        f = tmp_path / name
        f.write_bytes(body) if isinstance(body, bytes) else f.write_text(body, encoding="utf-8")
        line = one_line_error(capsys, *cmd, "--lengths", f)
        assert f"--lengths {str(f)!r}" in line and frag in line, (name, line)
    for target in (tmp_path / "missing.csv", tmp_path):
        line = one_line_error(capsys, *cmd, "--lengths", target)
        assert "--lengths" in line and str(target) in line


def test_good_lengths_variants(tmp_path):
    for name, (body, I, L) in GOOD_FILES.items():
        f = tmp_path / name
        f.write_bytes(body.encode("utf-8"))
        lens = read_lengths(f)
        assert lens.inputs.tolist() == I and lens.outputs.tolist() == L, name


def test_mutated_lengths_files(capsys, tmp_path):
    """Seeded random edits of a valid file (bytes replaced, inserted, deleted, lines dropped or
    doubled): each read either succeeds with counts in 1..10^9 or fails with one line naming the
    option and the file -- never a traceback or another exit status."""
    rng = np.random.default_rng(14)
    good = (HEADER + "\n" + "".join(f"{a},{b}\n" for a, b in zip(rng.integers(1, 900, 40),
                                                                  rng.integers(1, 300, 40)))).encode()
    alphabet = b"0123456789,,\n\n -.e+x\xff\r"
    outcomes = {"ok": 0, "error": 0}
    for trial in range(120):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            op, i = int(rng.integers(0, 3)), int(rng.integers(0, len(b)))
            c = alphabet[int(rng.integers(0, len(alphabet)))]
            if op == 0:
                b[i] = c
            elif op == 1:
                b.insert(i, c)
            else:
                del b[i]
        f = tmp_path / f"m{trial}.csv"
        f.write_bytes(bytes(b))
        rc, out, err = run(capsys, "memory", "--N", 8, "--k", 2, "--lengths", f, "--json")
        assert "Traceback" not in err and rc in (0, 2), err
        if rc == 0:
            lens = read_lengths(f)
            assert lens.inputs.min() >= 1 and lens.outputs.min() >= 1 and lens.outputs.max() <= 10**9
            json.loads(out)
            outcomes["ok"] += 1
        else:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and f"--lengths {str(f)!r}" in lines[0], err
            outcomes["error"] += 1
    assert outcomes["ok"] > 10 and outcomes["error"] > 10, outcomes
