"""Result files: ``{dataset}_results.json`` (one section per notebook), written atomically.

Each notebook of a grid cell merges its own section (``profiling``, ``kstar``,
``memory``) into the cell's results file, so a rerun of one notebook replaces only
its section and an interrupted run leaves the previous file intact.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pdlib.records import atomic_write_json

RESULTS_NAME = "{dataset}_results.json"


def results_path(output_dir, dataset: str) -> Path:
    return Path(output_dir) / RESULTS_NAME.format(dataset=dataset)


def clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        return clean(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return clean({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    return obj


def read_json(path, default=None):
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def write_json(path, obj) -> Path:
    atomic_write_json(path, clean(obj))
    return Path(path)


def write_section(output_dir, dataset: str, section: str, data: dict, *, cell: dict | None = None) -> Path:
    """Merge ``{section: data}`` into ``{dataset}_results.json`` (atomic read-modify-write)."""
    path = results_path(output_dir, dataset)
    obj = read_json(path, {}) or {}
    if cell:
        obj["cell"] = clean(cell)
    obj[section] = clean(data)
    return write_json(path, obj)


def read_results(output_dir, dataset: str) -> dict:
    return read_json(results_path(output_dir, dataset), {}) or {}


def headline(results: dict) -> dict:
    """The numbers the index shows for a cell: k*, k_hat, gap %, memory errors."""
    k = results.get("kstar") or {}
    m = results.get("memory") or {}
    prof = results.get("profiling") or {}
    err = m.get("errors_pct") or {}
    return {
        "p": prof.get("p"),
        "k_star": k.get("k_star"),
        "k_hat": k.get("k_hat"),
        "gap_pct": k.get("gap_pct"),
        "X0_err_pct": err.get("X0"),
        "Xmax_err_pct": err.get("Xmax"),
        "kappa_err_pct": err.get("kappa"),
        "bound_valid_pct": m.get("bound_valid_pct"),
        "memory_pass": m.get("all_pass"),
    }
