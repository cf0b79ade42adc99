"""scripts/profile-docker-model.sh: argument handling, model detection and the exact commands
(--dry-run). No Docker engine runs here; the staged module list is checked by importing the
profiler from a folder holding only those files."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "profile-docker-model.sh"
R = "/tmp/pdlib-profiler"


def sh(*args, stdin=None, env=None):
    return subprocess.run(["bash", str(SCRIPT), *args], check=False, input=stdin, capture_output=True, text=True, timeout=60,
                          env=env)


def dry(*args):
    p = sh(*args, "--dry-run")
    assert p.returncode == 0, p.stderr
    return [shlex.split(line) for line in p.stdout.splitlines()]


def test_dry_run_exact_commands_with_model():
    cmds = dry("srv", "--model", "/models/Qwen3 1.7B", "--max-tokens", "512", "--batch-size", "8",
               "--dtype", "bfloat16", "--output", "out/prof.json")
    docker = [c for c in cmds if c[0] == "docker"]
    assert docker == [
        ["docker", "exec", "srv", "mkdir", "-p", R],
        ["docker", "cp", "<stage>/pdlib", f"srv:{R}/"],
        ["docker", "exec", "-w", R, "srv", "python3", "-m", "pdlib.cli.memory_profile", "profile-memory",
         "--model", "/models/Qwen3 1.7B", "--weights", "pretrained", "--max-tokens", "512", "--batch-size", "8",
         "--dtype", "bfloat16", "--output", f"{R}/memory_profile.json"],
        ["docker", "cp", f"srv:{R}/memory_profile.json", "out/prof.json"],
        ["docker", "exec", "srv", "rm", "-rf", R],
    ]
    staged = [c for c in cmds if c[0] == "cp"]
    assert ["cp", str(ROOT / "pdlib/memprof/profile.py"), "<stage>/pdlib/memprof/profile.py"] in staged


def test_dry_run_autodetect_per_layer_keep_python_docker():
    cmds = dry("c1", "--per-layer", "layers.csv", "--keep", "--python", "/opt/py/bin/python", "--docker", "podman",
               "--weights", "random")
    assert cmds[0][:4] == ["podman", "exec", "c1", "sh"] and "/proc/[0-9]*/cmdline" in cmds[0][-1]
    run = next(c for c in cmds if "profile-memory" in c)
    assert run[run.index("--model") + 1] == "<detected-model>"
    assert run[5] == "/opt/py/bin/python" and run[-2:] == ["--per-layer", f"{R}/per_layer.csv"]
    assert run[run.index("--weights") + 1] == "random"
    assert ["podman", "cp", f"c1:{R}/per_layer.csv", "layers.csv"] in cmds
    assert not any(c[:2] == ["podman", "exec"] and "rm" in c for c in cmds)      # --keep


@pytest.mark.parametrize("text,model", [
    ("/usr/bin/python3 /usr/local/bin/vllm serve Qwen/Qwen3-1.7B --port 8000\nMODEL_NAME=other\n", "Qwen/Qwen3-1.7B"),
    ("python3 -m vllm.entrypoints.openai.api_server --model /models/q3 --dtype auto\n", "/models/q3"),
    ("text-generation-launcher --model-id=/data/llama --port 80\n", "/data/llama"),
    ("python serve.py --model_name_or_path meta/llama\n", "meta/llama"),
    ("nginx -g daemon off;\nHF_MODEL_ID=x/y\nMODEL_ID=a/b\n", "a/b"),
    ("nginx\nPATH=/usr/bin\n", ""),
])
def test_detect_model(text, model):
    p = sh("--detect-model", stdin=text)
    assert p.returncode == 0 and p.stdout.strip() == model


@pytest.mark.parametrize("args,msg", [
    ([], "CONTAINER"), (["--dry-run"], "container name"), (["c", "--bogus"], "unknown option '--bogus'"),
    (["c", "--model"], "--model needs a value"), (["c", "--weights", "fp8"], "--weights must be"),
    (["c", "--json"], "--json is not supported"),
])
def test_bad_arguments_exit_2(args, msg):
    p = sh(*args)
    assert p.returncode == 2
    assert msg in p.stderr + p.stdout


def test_staged_files_are_enough_to_import_the_profiler(tmp_path):
    cmds = dry("c", "--model", "m")
    for c in cmds:
        if c[0] == "cp":
            dst = tmp_path / c[2].replace("<stage>/", "")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(c[1]).read_bytes())
    code = ("import pdlib, pdlib.cli.memory_profile as m, pdlib.memprof.profile, pdlib.memprof.native, "
            "pdlib.memprof.layers, pdlib.memprof.compare, pdlib.models; "
            "print(pdlib.__file__); m.main(['profile-memory', '--help'])")
    p = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith(str(tmp_path)) and "--per-layer" in p.stdout
