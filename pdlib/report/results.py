"""Result files: ``{dataset}_results.json`` (one section per notebook), written atomically.

Each notebook of a grid cell merges its own section (``profiling``, ``kstar``,
``memory``) into the cell's results file, so a rerun of one notebook replaces only
its section and an interrupted run leaves the previous file intact.
"""
from __future__ import annotations

from pathlib import Path

from pdlib.experiments.result import jsonable as clean
from pdlib.experiments.result import read_json, write_json

__all__ = ["RESULTS_NAME", "clean", "headline", "read_json", "read_results", "results_path", "write_json",
           "write_section"]

RESULTS_NAME = "{dataset}_results.json"


def results_path(output_dir, dataset: str) -> Path:
    return Path(output_dir) / RESULTS_NAME.format(dataset=dataset)


def write_section(output_dir, dataset: str, section: str, data, *, cell: dict | None = None) -> Path:
    """Merge ``{section: data}`` into ``{dataset}_results.json`` (atomic read-modify-write);
    ``data`` is a dict or an experiment result (its ``to_json()``)."""
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
