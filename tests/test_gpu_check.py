"""scripts/gpu-check.sh on CPU: argument handling, --dry-run (the exact steps), and the result
layout and summary of a whole run played by a stub ``--python`` that writes what each step's real
command would (no GPU here; the real run is the script itself on a GPU machine, docs/gpu.md)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
STEPS = ["env", "tests", "bench", "grid", "memory"]


def sh(*args, env=None, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    (d / "models" / "qwen3-1.7b").mkdir(parents=True)
    (d / "models" / "qwen3-1.7b" / "config.json").write_text("{}")
    return d


def test_missing_outdir_prints_usage_and_exits_2():
    p = sh()
    assert p.returncode == 2
    assert "usage" not in p.stdout and "scripts/gpu-check.sh OUTDIR" in p.stderr and "OUTDIR is required" in p.stderr
    h = sh("--help")
    assert h.returncode == 0 and "scripts/gpu-check.sh OUTDIR" in h.stdout


@pytest.mark.parametrize("args,msg", [
    (["o", "--bogus"], "unknown option '--bogus'"), (["o", "p"], "one OUTDIR only"),
    (["o", "--skip", "bench,nope"], "unknown step 'nope'"), (["o", "--timeout", "grid"], "STEP=SECONDS"),
    (["o", "--timeout", "foo=3"], "STEP=SECONDS"), (["o", "--python"], "--python needs a value"),
    (["o", "--data", "/nonexistent"], "no /nonexistent/models/qwen3-1.7b/config.json"),
    (["o", "--summary"], "not a gpu-check OUTDIR"), (["o", "--dry-run", "--stage"], "--stage must come first"),
])
def test_bad_arguments_exit_2(args, msg, tmp_path):
    p = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       check=False)
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr


def test_dry_run_prints_every_step(data, tmp_path):
    out = tmp_path / "res"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    p = sh(out, "--dry-run", "--data", data, "--timeout", "grid=99", "--python", "py3", "--wheels", wheels)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    steps = {ln.split(":", 1)[0]: shlex.split(ln.split(":", 1)[1]) for ln in lines if not ln.startswith("#")}
    assert list(steps) == ["wheels", *STEPS, "summary"]
    w = steps["wheels"]
    assert w[:5] == ["py3", "-m", "pip", "install", "-q"] and "--no-index" in w and "--no-deps" in w
    assert w[-1] == f"{wheels}/*.whl"
    assert not out.exists()                                               # nothing run, nothing written
    model = str(data.resolve() / "models" / "qwen3-1.7b")
    t = steps["tests"]
    assert t[0] == "timeout" and t[2:6] == ["py3", "-m", "pytest", "-m"] and t[6] == "gpu"
    assert sum(int(steps[s][1]) for s in STEPS if s != "grid") + 190 <= 480       # the 8-minute budget
    assert {"tests/test_native_gpu.py", "tests/test_triton_attention.py"} <= set(t)
    assert t[t.index("--junitxml") + 1] == f"{out}/tests/junit.xml"
    b = steps["bench"]
    assert b[3] == "benchmarks/native_vs_hf.py" and b[b.index("--model-dir") + 1] == model
    assert b[b.index("--config") + 1] == "qwen3-1.7b" and b[b.index("--dtype") + 1] == "bf16"
    assert b[b.index("--json-out") + 1] == f"{out}/bench/result.json"
    assert b[-3:] == [">", f"{out}/bench/log.txt", "2>&1"]
    g = steps["grid"]
    assert g[:2] == ["timeout", "99"] and g[3:6] == ["-m", "pdlib", "run"]
    assert g[g.index("--grid") + 1] == "params/grid-gpu-check.yaml" and g[g.index("--outputs") + 1] == f"{out}/grid"
    m = steps["memory"]
    assert "profile-memory" in m and m[m.index("--model") + 1] == model and m[m.index("--engine") + 1] == "native"
    assert m[m.index("--output") + 1] == f"{out}/memory/qwen3-1.7b.json"
    skip = sh(out, "--dry-run", "--data", data, "--skip", "bench,grid").stdout
    assert "# bench: skipped" in skip and "# grid: skipped" in skip and "\nmemory:" in skip


def test_grid_file_is_the_issue_grid():
    from pdlib.params import load_grid
    g = load_grid(ROOT / "params" / "grid-gpu-check.yaml")
    assert g.name == "gpu-check" and g.notebooks == ["01_profiling", "02_kstar_vs_khat", "03_memory_validation"]
    cells = [c.params for c in g.cells]
    assert [c["dataset"] for c in cells] == ["alpaca", "sharegpt"]
    assert all(c["N"] == 64 and c["num_requests"] == 1024 and c["model"] == "qwen3-1.7b"
               and c["engine"] == "native-gpu" for c in cells)


STUB = r'''#!/usr/bin/env bash
# a stand-in interpreter: plays each gpu-check step, hands the summary to the real python
real=__REAL__
a="$*"
case "$a" in
  *"pdlib GPU check"*|"-c import json, sys; print"*) exec "$real" "$@" ;;
  "-c import torch, sys"*) exit 0 ;;
  "-c import torch") exit 0 ;;
  "-c import ipykernel"|"-c import pytest_timeout") exit 1 ;;
  -c*"auto_backend"*) d="${@: -1}"; echo '{"gpu": "Stub H100", "gpu_memory_gb": 80, "capability": "9.0",
      "torch": "2.11", "transformers": "5.17", "triton": "3.6", "flash_attn": null, "auto_backend": "triton",
      "triton_smoke": "'"${STUB_SMOKE:-ok}"'"}' > "$d/env.json"; [[ "${STUB_SMOKE:-ok}" == ok ]] ;;
  *"-m pytest"*) x="${a#*--junitxml }"; echo '<testsuites><testsuite tests="9" failures="1" errors="0"
      skipped="2"></testsuite></testsuites>' > "${x%% *}"; echo "1 failed"; exit 1 ;;
  *native_vs_hf.py*) x="${a#*--json-out }"; echo "attention ${PDLIB_ATTN_BACKEND:-auto}"; echo '{"decode": [{"batch": 64, "context": 512, "native_ms": 3.0,
      "native_device_ms": 2.9, "floor_ms": 2.4, "hf_eager_ms": 25.0}], "serving": {"native_tok_s": 15000,
      "hf_generate_batch_tok_s": 1250}}' > "$x" ;;
  *"pdlib run"*) x="${a#*--outputs }"; x="${x%% *}"; c="$x/gpu-check/alpaca/qwen3-1.7b/native-gpu"; mkdir -p "$c"
      echo '{"notebooks": {"01_profiling": {"status": "ok"}, "02_kstar_vs_khat": {"status": "failed"}}}' > "$c/cell.json"
      echo '{"failed": 1, "failures": ["alpaca/qwen3-1.7b/native-gpu 02_kstar_vs_khat: boom"]}'; echo warn >&2; exit 1 ;;
  *profile-memory*) exec sleep 30 ;;
  *) echo "stub: unexpected $a" >&2; exit 99 ;;
esac
'''


def test_whole_run_layout_statuses_and_summary(data, tmp_path):
    stub = tmp_path / "py"
    stub.write_text(STUB.replace("__REAL__", shlex.quote(sys.executable)))
    stub.chmod(0o755)
    out = tmp_path / "res"
    (tmp_path / "wheels").mkdir()                                     # none to install
    p = sh(out, "--python", stub, "--data", data, "--wheels", tmp_path / "wheels", "--timeout", "memory=1",
           timeout=120)
    assert p.returncode == 1, p.stderr                                # a step failed
    rows = [ln.split("\t") for ln in (out / "steps.tsv").read_text().splitlines()]
    assert rows[0] == ["step", "status", "seconds"]
    assert [r[:2] for r in rows[1:]] == [["env", "ok"], ["tests", "failed(1)"], ["bench", "ok"],
                                         ["grid", "failed(1)"], ["memory", "timeout"]]
    for s in STEPS:
        assert (out / s).is_dir()
    assert (out / "env" / "env.json").is_file() and (out / "tests" / "junit.xml").is_file()
    assert (out / "bench" / "result.json").is_file() and (out / "tests" / "log.txt").read_text().strip() == "1 failed"
    assert json.loads((out / "grid" / "run.json").read_text())["failed"] == 1
    assert (out / "grid" / "log.txt").read_text().strip() == "warn"
    summary = (out / "summary.md").read_text()
    assert summary in p.stdout
    table = {ln.split("|")[1].strip(): ln for ln in summary.splitlines() if ln.startswith("| ") and "|---" not in ln}
    assert "Stub H100" in table["env"] and "auto attention: triton" in table["env"]
    assert "6 passed, 1 failed, 0 errors, 2 skipped" in table["tests"]
    assert "native 3.00 ms/step" in table["bench"] and "(1.25x)" in table["bench"] and "15000 tok/s" in table["bench"]
    assert "1 of 2 notebooks ok in 1 cells" in table["grid"] and "boom" in table["grid"]
    assert "| memory | timeout |" in summary
    assert (out / "bench" / "log.txt").read_text().strip() == "attention auto"
    again = sh(out, "--summary", "--python", sys.executable)
    assert again.returncode == 0 and again.stdout == summary


def test_failed_triton_smoke_test_pins_torch_attention(data, tmp_path):
    stub = tmp_path / "py"
    stub.write_text(STUB.replace("__REAL__", shlex.quote(sys.executable)))
    stub.chmod(0o755)
    (tmp_path / "wheels").mkdir()
    out = tmp_path / "res"
    env = {**os.environ, "STUB_SMOKE": "CompilationError: boom"}
    p = sh(out, "--python", stub, "--data", data, "--wheels", tmp_path / "wheels", "--skip", "tests,grid,memory",
           env=env)
    assert p.returncode == 1 and "later steps run with attn_backend torch" in p.stderr
    assert (out / "bench" / "log.txt").read_text().splitlines()[0] == "attention torch"
    assert "Triton smoke test FAILED (CompilationError: boom)" in (out / "summary.md").read_text()
    assert "| env | failed(1) |" in p.stdout and "| tests | skipped |" in p.stdout
