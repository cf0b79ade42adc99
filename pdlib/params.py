"""Parameters: the YAML files in ``params/`` resolved into grid cells and grids.

A cell is dataset x model x engine. A notebook's parameters name the three
(``dataset="alpaca", model="tiny-qwen3", engine="native"``); ``load_cell`` reads
``params/datasets/alpaca.yaml``, ``params/models/tiny-qwen3.yaml`` and
``params/engines/native.yaml``, substitutes ``{data_dir}`` (the ``data_dir`` parameter, else
``pdlib.paths.data_dir()``) and gives the workload and the engine.

Grid files (``params/grid-*.yaml``), in the style of vLLM's ``bench sweep``: parameters
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
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pdlib import models, paths, theory
from pdlib.models.refs import looks_like_hf_id, model_folder, model_spec_from_ref


def read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such parameter file")
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(obj).__name__}")  # noqa: TRY004
    return obj


def _subst(obj, data_dir: str):
    if isinstance(obj, str):
        return obj.replace("{data_dir}", data_dir)
    if isinstance(obj, dict):
        return {k: _subst(v, data_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_subst(v, data_dir) for v in obj]
    return obj


def load_spec(kind: str, name: str, params_dir=None, data_dir=None) -> dict:
    """``params/<kind>s/<name>.yaml`` with ``{data_dir}`` substituted (kind: dataset|model|engine).
    A model without a YAML may be a model folder (holding config.json) or a Hugging Face id
    (``model_spec_from_ref``)."""
    params_dir = Path(params_dir) if params_dir else paths.params_dir()
    data_dir = str(data_dir) if data_dir else str(paths.data_dir() or "")
    path = params_dir / f"{kind}s" / f"{name}.yaml"
    if not path.is_file() and kind == "model" and (spec := model_spec_from_ref(name)) is not None:
        return spec
    if not path.is_file():
        have = sorted(p.stem for p in (params_dir / f"{kind}s").glob("*.yaml"))
        hint = (", a model folder with config.json or a Hugging Face id (org/name)" if kind == "model" else "")
        raise FileNotFoundError(f"{path}: no {kind} named {name!r} (available: {', '.join(have) or 'none'}{hint})")
    spec = _subst(read_yaml(path), data_dir)
    problems = check_spec(kind, spec)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    spec.setdefault("name", name)
    spec["_file"] = str(path)
    return spec


# The keys each kind of parameter file may hold, with their types (checked on load: a typo or a
# value of the wrong type is an error naming the file, never silently ignored).
SPEC_KEYS = {
    "dataset": {"name": str, "spec": dict, "description": str},
    "model": {"name": str, "config": dict, "config_path": str, "hf_id": str, "tokenizer": str, "dtype": str,
              "weights": str, "architecture": str, "description": str},
    "engine": {"name": str, "engine": str, "config": dict, "timing": dict, "profile": dict, "model_as": str,
               "description": str},
}
SPEC_CHOICES = {("model", "weights"): ("random", "pretrained"), ("engine", "engine"): ("sim", "native", "vllm"),
                ("engine", "model_as"): ("path", "config")}


def check_spec(kind: str, spec: dict) -> list[str]:
    """The problems of one parameter file's mapping (empty when it is fine)."""
    keys, out = SPEC_KEYS[kind], []
    for k, v in spec.items():
        if k not in keys:
            out.append(f"unknown key {k!r} (allowed: {', '.join(sorted(keys))})")
        elif not isinstance(v, keys[k]) or isinstance(v, bool):
            out.append(f"{k!r} must be a {keys[k].__name__}, got {type(v).__name__} {v!r}")
        elif (kind, k) in SPEC_CHOICES and v not in SPEC_CHOICES[kind, k]:
            out.append(f"{k!r} must be one of {', '.join(SPEC_CHOICES[kind, k])}, got {v!r}")
    if kind == "model" and not any(spec.get(k) for k in ("config", "config_path", "hf_id")):
        out.append("a model needs 'config', 'config_path' or 'hf_id'")
    return out


@dataclass
class Cell:
    dataset: str
    model: str
    engine: str
    dataset_spec: dict
    model_spec: dict
    engine_spec: dict
    data_dir: Path
    output_dir: Path
    num_requests: int | None = None
    seed: int = 0
    max_output_tokens: int | None = None   # overrides the dataset YAML's cap when set
    extra: dict = field(default_factory=dict)

    @property
    def impl(self) -> str:
        """The engine implementation (``engine:`` in the engine YAML, else its file name)."""
        return str(self.engine_spec.get("engine") or self.engine)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}/{self.engine}"

    def path(self, filename: str) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / filename

    def workload_spec(self, num_requests: int | None = None) -> dict:
        spec = dict(self.dataset_spec.get("spec", {}))
        spec.setdefault("dataset", self.dataset)
        if self.model_spec.get("tokenizer") and "tokenizer" not in spec:
            spec["tokenizer"] = self.model_spec["tokenizer"]
        n = num_requests if num_requests is not None else self.num_requests
        if n is not None:
            spec["num_requests"] = int(n)
        if self.max_output_tokens is not None:
            spec["max_output_tokens"] = int(self.max_output_tokens)
        spec.setdefault("seed", self.seed)
        spec.setdefault("data_dir", str(self.data_dir))
        return spec

    def load_workload(self, num_requests: int | None = None):
        from pdlib.data import load_workload
        return load_workload(self.workload_spec(num_requests))

    def engine_config(self) -> dict:
        """Keyword arguments for ``pdlib.engines.get_engine``: the engine YAML's ``config``
        plus the model (for real engines) — ``model`` is the model spec dict."""
        cfg = dict(self.engine_spec.get("config") or {})
        if cfg.get("device") == "auto":
            import torch
            cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if self.impl == "sim" and "timing" in self.engine_spec:
            cfg.setdefault("timing", theory.TimingModel.from_dict(
                self.engine_spec["timing"], f"{self.engine_spec.get('_file')}: timing"))
        if self.impl == "sim":
            cfg.setdefault("kv_bytes_per_token", self.kv_bytes_per_token())
        if self.impl != "sim":
            as_path = self.engine_spec.get("model_as") == "path"
            cfg.setdefault("model", self.model_ref(as_path=as_path))
            if not as_path:
                cfg.setdefault("weights", self.model_spec.get("weights", "random"))
            if self.model_spec.get("dtype"):
                cfg.setdefault("dtype", self.model_spec["dtype"])
        return cfg

    def model_ref(self, as_path: bool = False):
        """What an engine loads: the model YAML's inline ``config`` (a dict, or a folder holding
        its config.json when ``as_path``), its ``config_path``, or its ``hf_id``."""
        m = self.model_spec
        if m.get("config"):
            if not as_path:
                return dict(m["config"])
            return str(models.materialize_model(m["name"], m["config"], m.get("dtype") or "float32",
                                         seed=self.seed) if m.get("weights", "random") == "random"
                       else models.materialize_config(m["name"], m["config"]))
        if m.get("weights") == "pretrained" and m.get("hf_id") and not m.get("config_path"):
            return m["hf_id"]
        if m.get("config_path"):
            return m["config_path"]
        if m.get("hf_id"):
            return m["hf_id"]
        raise ValueError(f"{m.get('_file')}: a model needs 'config', 'config_path' or 'hf_id'")

    def kv_bytes_per_token(self) -> int:
        """KV bytes per token of the cell's model at its dtype (``theory.kv_bytes_per_token``)."""
        m = self.model_spec
        if m.get("config"):
            conf = dict(m["config"])
        elif m.get("config_path"):
            conf = json.loads((Path(m["config_path"]) / "config.json").read_text())
        else:                          # a Hugging Face id: its config from the hub (or its cache)
            conf = models.load_hf_config(m["hf_id"]).to_dict()
        return theory.kv_bytes_per_token(conf, m.get("dtype"))

    def profile_kwargs(self) -> dict:
        """The engine YAML's ``profile`` section (keyword arguments of ``engine.profile``)."""
        return dict(self.engine_spec.get("profile") or {})

    def make_engine(self, **overrides):
        from pdlib.engines import get_engine
        return get_engine(self.impl, **{**self.engine_config(), **overrides})

    def describe(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "engine": self.engine,
                "dataset_file": self.dataset_spec.get("_file"), "model_file": self.model_spec.get("_file"),
                "engine_file": self.engine_spec.get("_file"), "data_dir": str(self.data_dir),
                "num_requests": self.num_requests, "seed": self.seed, "max_output_tokens": self.max_output_tokens,
                "dtype": self.model_spec.get("dtype"), "weights": self.model_spec.get("weights")}


def load_cell(dataset: str, model: str, engine: str, *, params_dir=None, data_dir=None,
              output_dir="outputs/interactive", num_requests=None, seed: int = 0, max_output_tokens=None,
              **extra) -> Cell:
    """Resolve a grid cell from ``params/`` (see the module docstring)."""
    data_dir = paths.data_dir(data_dir) or paths.project_dir().parent / "shared" / "data"
    return Cell(dataset, model, engine,
                load_spec("dataset", dataset, params_dir, data_dir),
                load_spec("model", model, params_dir, data_dir),
                load_spec("engine", engine, params_dir, data_dir),
                data_dir, paths.resolve_output(output_dir), num_requests, int(seed), max_output_tokens, extra)


REQUIRED = ("dataset", "model", "engine")


@dataclass
class GridCell:
    params: dict

    @property
    def name(self) -> str:
        """``dataset/model/engine``, the model as its outputs folder name (``model_folder``)."""
        return "/".join(self.model_folder if k == "model" else str(self.params[k]) for k in REQUIRED)

    @property
    def model_folder(self) -> str:
        """The model's folder name under ``outputs/<grid>/<dataset>/`` (``models.refs.model_folder``)."""
        return model_folder(str(self.params["model"]))

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


GRID_KEYS = {"name", "notebooks", "once", "index_notebook", "notebooks_dir", "defaults", "axes"}
DEFAULT_NOTEBOOKS = ["01_profiling", "02_kstar_vs_khat", "03_memory_validation"]
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class GridError(ValueError):
    """Every problem of a grid file at once (one per line), raised before anything runs."""

    def __init__(self, path, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the grid file:\n  - " + "\n  - ".join(problems))


def safe_component(value, what: str) -> str | None:
    """None when ``value`` can name one folder under ``--outputs`` (no ``/``, ``..``, spaces), else why not."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__} {value!r}"
    if not _SAFE.match(value) or value in (".", ".."):
        return (f"{what} {value!r} must be one folder name: letters, digits and ._+- "
                "(no '/', '..' or spaces), so results stay inside --outputs")
    return None


def model_ref_problem(value, what: str = "model") -> str | None:
    """None when ``value`` names a model: a ``params/models`` name (one folder name), a Hugging
    Face id or an existing model folder (its outputs go under ``model_folder(value)``)."""
    if isinstance(value, str) and (looks_like_hf_id(value) or Path(value).expanduser().is_dir()):
        return None
    why = safe_component(value, what)
    return why and f"{why}, or a Hugging Face id (org/name) or an existing model folder"


def _notebook_list(g: dict, key: str, default, problems: list) -> list:
    val = g.get(key, default)
    if val is None:
        return []
    if not isinstance(val, list) or not all(isinstance(x, str) and x for x in val):
        problems.append(f"'{key}' must be a list of notebook names, got {val!r}")
        return []
    if key == "notebooks" and not val:
        problems.append("'notebooks' is empty: list the notebooks to run per cell (or leave the key out "
                        f"for the defaults {DEFAULT_NOTEBOOKS})")
    return list(val)


def load_grid(path) -> Grid:
    """Read and check a grid file; every structural problem is listed at once (``GridError``)."""
    path = Path(path)
    g = read_yaml(path)
    problems = [f"unknown key {k!r} (allowed: {', '.join(sorted(GRID_KEYS))})" for k in g if k not in GRID_KEYS]
    name = g.get("name")
    name = path.stem.removeprefix("grid-") if name is None else name
    why = safe_component(name, "name")
    if why:
        problems.append(why)
    notebooks = _notebook_list(g, "notebooks", DEFAULT_NOTEBOOKS, problems)
    once = _notebook_list(g, "once", [], problems)
    index_nb = g.get("index_notebook", "00_index")
    if index_nb is not None and not (isinstance(index_nb, str) and index_nb):
        problems.append(f"'index_notebook' must be a notebook name or null, got {index_nb!r}")
    defaults = g.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"'defaults' must be a mapping, got {type(defaults).__name__}")
        defaults = {}
    axes = g.get("axes")
    n_before = len(problems)
    if not isinstance(axes, list) or not axes:
        problems.append("'axes' must be a non-empty list of lists of dicts")
        axes = []
    for i, axis in enumerate(axes):
        if not isinstance(axis, list) or not axis or not all(isinstance(d, dict) for d in axis):
            problems.append(f"axes[{i}] must be a non-empty list of dicts")
    cells, seen = [], set()
    if len(problems) == n_before:
        for combo in itertools.product(*axes):
            params = dict(defaults)
            for d in combo:
                params.update(d)
            missing = [k for k in REQUIRED if k not in params]
            if missing:
                problems.append(f"cell {combo} has no {', '.join(missing)}")
                continue
            bad = [w for k in REQUIRED if (w := (model_ref_problem if k == "model" else safe_component)(params[k], k))]
            if bad:
                problems += [w for w in bad if w not in problems]
                continue
            c = GridCell(params)
            if c.name in seen:
                problems.append(f"cell {c.name} appears twice")
            seen.add(c.name)
            cells.append(c)
    nb_dir = g.get("notebooks_dir")
    if nb_dir is not None and not isinstance(nb_dir, str):
        problems.append(f"'notebooks_dir' must be a folder path, got {nb_dir!r}")
        nb_dir = None
    if problems:
        raise GridError(path, problems)
    nb_dir = (path.parent / nb_dir).resolve() if nb_dir else None
    return Grid(name, path, notebooks, once, defaults, cells, index_nb, nb_dir)
