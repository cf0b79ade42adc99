"""Per-dataset row parsers for the text datasets. Each module has ``locate(spec, data_dir) ->
Origin`` and ``parse(row, index, spec) -> TextRecord | None`` (raising ``BadRecord``), used for
hub rows and local rows alike; a module may add ``read(spec, origin)`` for a local layout that
is not JSON/JSONL/parquet rows (LongBench v2's markdown)."""
from __future__ import annotations

import importlib

MODULES = {"alpaca": "alpaca", "sharegpt": "sharegpt", "longbench": "longbench",
           "longbench_v1": "longbench_v1", "lmsys": "lmsys", "processbench": "processbench"}


def get_source(name: str):
    return importlib.import_module(f"{__name__}.{MODULES[name]}")
