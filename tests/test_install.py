"""A non-editable install works away from the checkout: the wheel carries params/ and notebooks/
(``<prefix>/share/pdlib``), and ``pdlib run --grid params/grid-test.yaml --only ...`` run from
another folder finds them, runs the real notebooks and writes its results under ``--outputs``.

The wheel is built from this checkout (no network) and installed into a fresh venv; the
venv reaches the test environment's third-party packages through a ``.pth`` path line (which
does not run the checkout's editable-install hook, so the installed copy is what runs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(900)


def _run(cmd, **kw):
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("papermill")
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
          str(ROOT)], cwd=tmp)
    (wheel,) = wheels.glob("pdlib-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    return env_dir


def test_installed_copy_is_not_the_checkout(installed, tmp_path):
    py = installed / "bin" / "python"
    r = _run([str(py), "-c", "import pdlib, pdlib.paths as p; print(pdlib.__file__); print(p.project_dir())"],
             cwd=tmp_path)
    mod, project = r.stdout.split()
    assert not Path(mod).is_relative_to(ROOT), mod
    assert Path(project) == installed / "share" / "pdlib"
    assert (Path(project) / "params" / "grid-test.yaml").is_file()
    assert (Path(project) / "notebooks" / "02_kstar_vs_khat.ipynb").is_file()


def test_grid_runs_from_another_folder(installed, tmp_path, data_dir):
    out = tmp_path / "out"
    env = {**os.environ, "PDLIB_DATA_DIR": str(data_dir), "PDLIB_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    _run([str(installed / "bin" / "pdlib"), "run", "--grid", "params/grid-test.yaml", "--only", "alpaca",
          "--outputs", str(out), "--no-progress", "--json"], cwd=tmp_path, env=env, timeout=850)
    cell = out / "test" / "alpaca" / "tiny-qwen3" / "sim"
    res = json.loads((cell / "alpaca_results.json").read_text())
    assert {"profiling", "kstar", "memory"} <= set(res)
    rec = json.loads((cell / "cell.json").read_text())
    assert all(s["status"] == "ok" for s in rec["notebooks"].values()), rec
    assert (out / "index.html").is_file()
    assert not (tmp_path / "outputs").exists()          # everything went under --outputs
