"""Grid files (``params/grid-*.yaml``), in the style of vLLM's ``bench sweep``: parameters
are lists of dicts and the cells are their cartesian product.

```yaml
name: default                       # outputs/<name>/...
notebooks: [01_profiling, 02_kstar_vs_khat, 03_memory_validation]   # run per cell
once: [04_gpu_budget]               # run once per grid (outputs/<name>/_global/)
index_notebook: 00_index            # run last (outputs/<name>/00_index.html); null: none
notebooks_dir: ../notebooks         # optional, relative to the grid file (default: notebooks/)
defaults: {num_requests: 64, N: 8}  # every cell's parameters start from these
axes:                               # cells = product of the lists; dicts merge left to right
  - [{dataset: alpaca}, {dataset: sharegpt, num_requests: 48}]
  - [{model: tiny-qwen3}]
  - [{engine: native}, {engine: vllm}]
```
Every cell must end up with ``dataset``, ``model`` and ``engine``; its name is
``dataset/model/engine`` and its folder ``outputs/<grid>/<dataset>/<model>/<engine>/``.
"""
from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from pdlib.experiments.cell import read_yaml

REQUIRED = ("dataset", "model", "engine")


@dataclass
class GridCell:
    params: dict

    @property
    def name(self) -> str:
        return "/".join(str(self.params[k]) for k in REQUIRED)

    def matches(self, pattern: str | None) -> bool:
        """``--only``: a glob on the cell name, or a substring of it (``alpaca``, ``*/native``)."""
        if not pattern:
            return True
        return any(fnmatch.fnmatch(self.name, p) or p in self.name for p in pattern.split(","))


@dataclass
class Grid:
    name: str
    path: Path
    notebooks: list[str]
    once: list[str]
    defaults: dict
    cells: list[GridCell] = field(default_factory=list)
    index_notebook: str | None = "00_index"
    notebooks_dir: Path | None = None      # None: the repository's notebooks/


def load_grid(path) -> Grid:
    path = Path(path)
    g = read_yaml(path)
    name = g.get("name") or path.stem.removeprefix("grid-")
    notebooks = g.get("notebooks") or ["01_profiling", "02_kstar_vs_khat", "03_memory_validation"]
    once = g.get("once") or []
    defaults = g.get("defaults") or {}
    axes = g.get("axes")
    for key, val in (("notebooks", notebooks), ("once", once)):
        if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
            raise ValueError(f"{path}: '{key}' must be a list of notebook names")
    if not isinstance(defaults, dict):
        raise ValueError(f"{path}: 'defaults' must be a mapping")  # noqa: TRY004
    if not isinstance(axes, list) or not axes:
        raise ValueError(f"{path}: 'axes' must be a non-empty list of lists of dicts")
    for i, axis in enumerate(axes):
        if not isinstance(axis, list) or not axis or not all(isinstance(d, dict) for d in axis):
            raise ValueError(f"{path}: axes[{i}] must be a non-empty list of dicts")
    cells, seen = [], set()
    for combo in itertools.product(*axes):
        params = dict(defaults)
        for d in combo:
            params.update(d)
        missing = [k for k in REQUIRED if k not in params]
        if missing:
            raise ValueError(f"{path}: cell {combo} has no {', '.join(missing)}")
        c = GridCell(params)
        if c.name in seen:
            raise ValueError(f"{path}: cell {c.name} appears twice")
        seen.add(c.name)
        cells.append(c)
    nb_dir = g.get("notebooks_dir")
    nb_dir = (path.parent / nb_dir).resolve() if nb_dir else None
    return Grid(name, path, notebooks, once, defaults, cells, g.get("index_notebook", "00_index"), nb_dir)
