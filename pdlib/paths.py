"""Where pdlib's files are: one rule per folder, one environment variable per rule.

| folder    | variable            | default                                                            |
|-----------|---------------------|--------------------------------------------------------------------|
| project   | ``PDLIB_PROJECT_DIR`` | the source checkout holding this package (``params/`` and        |
|           |                     | ``notebooks/`` beside ``pdlib/``), else the copy a non-editable    |
|           |                     | install put in ``<prefix>/share/pdlib``                            |
| params    | ``PDLIB_PARAMS_DIR``  | ``<project>/params``                                              |
| notebooks | (none)              | ``<project>/notebooks``                                            |
| data      | ``PDLIB_DATA_DIR``    | ``shared/data`` beside the checkout that holds the current folder |
|           |                     | or this package (the ``../shared/data`` layout), else none         |
| cache     | ``PDLIB_CACHE_DIR``   | ``~/.cache/pdlib``; tokenized workloads in ``<cache>/workloads``, |
|           |                     | materialised models in ``<cache>/models``                          |
| outputs   | ``PDLIB_OUTPUTS_DIR`` | ``<checkout>/outputs`` in a source checkout, else ``./outputs``   |

A relative output folder (a notebook's ``output_dir = "outputs/interactive/..."``) is
resolved against the folder that holds ``outputs`` — not the notebook's own folder — so a
notebook run in JupyterLab writes where ``pdlib run`` does.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _env(name: str) -> Path | None:
    v = os.environ.get(name)
    return Path(v).expanduser() if v else None


def checkout_dir() -> Path | None:
    """The source checkout holding this package (editable install or ``PYTHONPATH``), if any."""
    root = _PKG.parent
    return root if (root / "params").is_dir() and (root / "notebooks").is_dir() else None


def project_dir() -> Path:
    """The folder with ``params/`` and ``notebooks/`` (see the module table)."""
    env = _env("PDLIB_PROJECT_DIR")
    if env:
        return env
    root = checkout_dir()
    if root:
        return root
    for prefix in (sys.prefix, sys.base_prefix):
        d = Path(prefix) / "share" / "pdlib"
        if (d / "params").is_dir():
            return d
    raise FileNotFoundError(f"pdlib's project files (params/, notebooks/) were not found beside {_PKG} "
                            f"nor in {Path(sys.prefix) / 'share' / 'pdlib'}; set PDLIB_PROJECT_DIR")


def params_dir() -> Path:
    return _env("PDLIB_PARAMS_DIR") or project_dir() / "params"


def notebooks_dir() -> Path:
    return project_dir() / "notebooks"


def data_dir(data_dir=None) -> Path | None:
    """The data folder: the argument, else ``$PDLIB_DATA_DIR``, else ``shared/data`` beside the
    checkout containing the current folder or this package (None if there is none)."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = _env("PDLIB_DATA_DIR")
    if env:
        return env
    for start in (Path.cwd().resolve(), _PKG):
        for d in (start, *start.parents):
            if (d / ".git").exists() or (d / "pyproject.toml").exists():
                cand = d.parent / "shared" / "data"
                if cand.is_dir():
                    return cand
                break
    return None


def cache_dir(kind: str) -> Path:
    """``<cache>/<kind>`` (kind: ``workloads`` or ``models``)."""
    if kind not in ("workloads", "models"):
        raise ValueError(f"cache kind must be 'workloads' or 'models', got {kind!r}")
    return (_env("PDLIB_CACHE_DIR") or Path.home() / ".cache" / "pdlib") / kind


def outputs_dir() -> Path:
    """Where results go by default (``pdlib run --outputs`` and the notebooks)."""
    env = _env("PDLIB_OUTPUTS_DIR")
    if env:
        return env
    root = checkout_dir()
    return (root if root else Path.cwd()) / "outputs"


def resolve_output(path) -> Path:
    """An output folder as given (absolute), or relative to the folder holding ``outputs/``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else outputs_dir().parent / p


def find_project_file(path, sub: str = "") -> Path:
    """``path`` as given when it exists, else the same path inside the project folder (so
    ``pdlib run --grid params/grid-test.yaml`` works from any folder after a non-editable install)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    cand = project_dir() / sub / p
    return cand if cand.exists() else p
