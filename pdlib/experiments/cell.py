"""One grid cell = dataset x model x engine, resolved from the YAML files in ``params/``.

A notebook's parameters name the three (``dataset="alpaca", model="tiny-qwen3",
engine="native"``); ``load_cell`` reads ``params/datasets/alpaca.yaml``,
``params/models/tiny-qwen3.yaml`` and ``params/engines/native.yaml``, substitutes
``{data_dir}`` (the ``data_dir`` parameter, else ``$PDLIB_DATA_DIR``, else
``../shared/data`` beside the repository) and gives the workload and the engine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def default_params_dir() -> Path:
    env = os.environ.get("PDLIB_PARAMS_DIR")
    return Path(env) if env else REPO / "params"


def default_data_dir() -> Path:
    env = os.environ.get("PDLIB_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


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
    """``params/<kind>s/<name>.yaml`` with ``{data_dir}`` substituted (kind: dataset|model|engine)."""
    params_dir = Path(params_dir) if params_dir else default_params_dir()
    data_dir = str(data_dir) if data_dir else str(default_data_dir())
    path = params_dir / f"{kind}s" / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (params_dir / f"{kind}s").glob("*.yaml"))
        raise FileNotFoundError(f"{path}: no {kind} named {name!r} (available: {', '.join(have) or 'none'})")
    spec = _subst(read_yaml(path), data_dir)
    spec.setdefault("name", name)
    spec["_file"] = str(path)
    return spec


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
            from pdlib.experiments.profiling import timing_from_spec
            cfg.setdefault("timing", timing_from_spec(self.engine_spec["timing"]))
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
            return str(materialize_model(m["name"], m["config"], m.get("dtype") or "float32",
                                         seed=self.seed) if m.get("weights", "random") == "random"
                       else materialize_config(m["name"], m["config"]))
        if m.get("weights") == "pretrained" and m.get("hf_id") and not m.get("config_path"):
            return m["hf_id"]
        if m.get("config_path"):
            return m["config_path"]
        if m.get("hf_id"):
            return m["hf_id"]
        raise ValueError(f"{m.get('_file')}: a model needs 'config', 'config_path' or 'hf_id'")

    def kv_bytes_per_token(self) -> int:
        """KV bytes per token of the cell's model at its dtype (``theory.kv_bytes_per_token``)."""
        import json

        from pdlib import theory
        m = self.model_spec
        if m.get("config"):
            conf = dict(m["config"])
        else:
            conf = json.loads((Path(m["config_path"]) / "config.json").read_text())
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


def materialize_config(name: str, config: dict) -> Path:
    """Write an inline model config as ``<cache>/models/<name>/config.json`` (for engines that
    load a folder, e.g. vLLM with dummy weights); rewritten only when it changed."""
    import json

    from pdlib.records import atomic_write_text
    cache = Path(os.environ.get("PDLIB_CACHE_DIR", REPO / ".cache"))
    d = cache / "models" / name
    conf = dict(config)
    conf.setdefault("architectures", [{"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                      "llama": "LlamaForCausalLM"}.get(conf.get("model_type"), "")])
    text = json.dumps(conf, indent=2, sort_keys=True) + "\n"
    f = d / "config.json"
    if not f.is_file() or f.read_text() != text:
        atomic_write_text(f, text)
    return d


def materialize_model(name: str, config: dict, dtype: str, seed: int = 0) -> Path:
    """An inline config as a loadable folder with *random* weights (seeded, saved with
    ``save_pretrained``) for engines that only load folders (vLLM). Built once per
    (name, config, dtype, seed) under the cache folder."""
    import hashlib
    import json
    key = hashlib.sha1(json.dumps([config, dtype, seed], sort_keys=True).encode()).hexdigest()[:10]
    d = Path(os.environ.get("PDLIB_CACHE_DIR", REPO / ".cache")) / "models" / f"{name}-random-{key}"
    if (d / ".complete").is_file():
        return d
    import torch
    import transformers
    conf = dict(config)
    mt = conf.pop("model_type")
    hf = transformers.AutoConfig.for_model(mt, **conf)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf, dtype=getattr(torch, {
        "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype)))
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tmp.joinpath(".complete").write_text("ok\n")
    if d.exists():
        import shutil
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, d)
    return d


def load_cell(dataset: str, model: str, engine: str, *, params_dir=None, data_dir=None,
              output_dir="outputs/interactive", num_requests=None, seed: int = 0, max_output_tokens=None,
              **extra) -> Cell:
    """Resolve a grid cell from ``params/`` (see the module docstring)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    return Cell(dataset, model, engine,
                load_spec("dataset", dataset, params_dir, data_dir),
                load_spec("model", model, params_dir, data_dir),
                load_spec("engine", engine, params_dir, data_dir),
                data_dir, Path(output_dir), num_requests, int(seed), max_output_tokens, extra)
