"""Model architectures by name (``models.yaml``), by config path, or by Hugging Face id.

``get_model("qwen3-1.7b")`` -> ``ModelSpec`` with the numbers the budget needs (layers, KV
heads, head_dim, num_parameters, dtype). Accepted, in this order:

1. a built-in name from ``pdlib/models.yaml`` (numbers verified against the published configs);
2. a path to a ``config.json`` or to a folder holding one (the ``../shared/data/models`` layout);
3. a Hugging Face id (``org/name``): the local HF cache first, then the hub when online.
   Offline, the error names what to pass instead.

No weights are read: parameter counts come from the architecture (``count_parameters``).
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import yaml

from .. import theory

MODELS_YAML = Path(__file__).with_name("models.yaml")

# model types whose parameter count count_parameters computes analytically (tested against
# transformers' meta-device build); others fall back to transformers itself.
ANALYTIC_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str                       # "builtin" | "path:<file>" | "hub:<id>"
    model_type: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    num_parameters: int | None
    dtype: str
    hf_id: str | None = None
    config: dict = field(default_factory=dict, repr=False, compare=False)

    def kv_bytes_per_token(self, dtype: str | None = None) -> int:
        """``2 * layers * kv_heads * head_dim * bytes`` (``theory.kv_bytes_per_token``; refuses
        sliding-window / mixed-layer configs)."""
        return theory.kv_bytes_per_token(self.config, dtype or self.dtype)

    def weights_bytes(self, dtype: str | None = None) -> int:
        if self.num_parameters is None:
            raise ValueError(f"{self.name}: parameter count unknown (model_type {self.model_type!r} "
                             "needs transformers + torch to count)")
        return self.num_parameters * theory.dtype_bytes(dtype or self.dtype)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "name", "source", "hf_id", "model_type", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "hidden_size", "intermediate_size", "vocab_size",
            "tie_word_embeddings", "num_parameters", "dtype")}


@lru_cache(maxsize=1)
def builtin_models() -> dict:
    with open(MODELS_YAML) as f:
        return yaml.safe_load(f)


def model_names() -> list[str]:
    return list(builtin_models())


def count_parameters(config: dict) -> int:
    """Parameters of a Llama-family decoder (llama, mistral, qwen2, qwen3) from its config, as
    transformers builds it: embeddings V*H; per layer q/k/v/o projections (+ biases: qwen2 has
    q/k/v biases, llama/qwen3 follow ``attention_bias``), qwen3's q/k RMSNorms (2*head_dim),
    the gated MLP 3*H*I (+ ``mlp_bias``), two RMSNorms 2*H; final norm H; lm_head V*H unless
    tied (tied weights counted once, like ``model.num_parameters()``)."""
    c = config
    mt = c.get("model_type")
    if mt not in ANALYTIC_TYPES:
        raise ValueError(f"count_parameters handles model_type in {ANALYTIC_TYPES}, got {mt!r}")
    H, V, I = int(c["hidden_size"]), int(c["vocab_size"]), int(c["intermediate_size"])
    nh = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or nh)
    hd = int(c.get("head_dim") or H // nh)
    L = int(c["num_hidden_layers"])
    qkv_bias = True if mt == "qwen2" else bool(c.get("attention_bias", False))
    o_bias = False if mt == "qwen2" else bool(c.get("attention_bias", False))
    attn = H * nh * hd + 2 * H * kv * hd + nh * hd * H
    attn += (nh * hd + 2 * kv * hd) * qkv_bias + H * o_bias
    if mt == "qwen3":
        attn += 2 * hd
    mlp = 3 * H * I + (2 * I + H) * bool(c.get("mlp_bias", False))
    per_layer = attn + mlp + 2 * H
    tied = bool(c.get("tie_word_embeddings", False))   # every family here defaults to untied
    return V * H + L * per_layer + H + (0 if tied else V * H)


def count_parameters_transformers(config: dict) -> int:
    """The same count by building the model on torch's meta device (no memory, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return int(model.num_parameters())


def _arch(c: dict, where: str) -> dict:
    c = c.get("text_config", c) if "num_hidden_layers" not in c else c
    try:
        field_ = lambda k: theory.config_int(c, k, where)  # an integer in 1..10^7, named in the error
        H, nh = field_("hidden_size"), field_("num_attention_heads")
        out = {"model_type": str(c.get("model_type", "unknown")),
               "num_hidden_layers": field_("num_hidden_layers"), "num_attention_heads": nh,
               "num_key_value_heads": field_("num_key_value_heads") if c.get("num_key_value_heads") else nh,
               "head_dim": field_("head_dim") if c.get("head_dim") else H // nh, "hidden_size": H,
               "intermediate_size": field_("intermediate_size") if c.get("intermediate_size") else 0,
               "vocab_size": field_("vocab_size")}
    except KeyError as e:
        raise ValueError(f"{where}: config has no {e.args[0]!r} (needed for the model's architecture)") from None
    except (TypeError, ValueError) as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(where) else f"{where}: bad architecture field in config: {msg}") from None
    return out


def _spec_from_config(c: dict, name: str, source: str, hf_id=None) -> ModelSpec:
    arch = _arch(c, source)
    mt = arch["model_type"]
    if mt in ANALYTIC_TYPES:
        n = count_parameters(c)
    else:
        try:
            n = count_parameters_transformers(c)
        except (ImportError, ValueError, KeyError, TypeError, AttributeError):
            # transformers/torch missing, or a model type they do not know
            n = None
    dt = str(c.get("torch_dtype") or c.get("dtype") or "float16").replace("torch.", "")
    tied = bool(c.get("tie_word_embeddings", False))
    return ModelSpec(name=name, source=source, hf_id=hf_id, tie_word_embeddings=tied,
                     num_parameters=n, dtype=dt, config=dict(c), **arch)


def _builtin(name: str) -> ModelSpec:
    e = dict(builtin_models()[name])
    cfg = {k: e[k] for k in ("model_type", "num_hidden_layers", "num_attention_heads",
                             "num_key_value_heads", "head_dim", "hidden_size", "intermediate_size",
                             "vocab_size", "tie_word_embeddings")}
    cfg["torch_dtype"] = e["dtype"]
    return ModelSpec(name=name, source="builtin", hf_id=e.get("hf_id"), config=cfg,
                     num_parameters=int(e["num_parameters"]), dtype=e["dtype"],
                     **{k: v for k, v in cfg.items() if k != "torch_dtype"})


def load_config_path(path) -> tuple[dict, Path]:
    """Read ``config.json`` (or ``<folder>/config.json``); errors name the file."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
        if not p.is_file():
            raise FileNotFoundError(f"{path}: folder has no config.json")
    try:
        with open(p) as f:
            c = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(c, dict):
        raise ValueError(f"{p}: expected a JSON object, got {type(c).__name__}")  # noqa: TRY004
    return c, p


def _hub_host_resolves() -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _from_hub(model_id: str) -> ModelSpec:
    hint = (f"pass a built-in name ({', '.join(model_names())}) or a path to a config.json / a "
            "folder containing one (e.g. ../shared/data/models/qwen3-1.7b)")
    try:
        from transformers import AutoConfig
    except ImportError:
        raise ValueError(f"model {model_id!r} is not built in and transformers is not installed to "
                         f"fetch its config; {hint}") from None
    try:                                   # cached copy first: works offline
        cfg = AutoConfig.from_pretrained(model_id, local_files_only=True)
    except (OSError, ValueError):
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if offline or not _hub_host_resolves():
            raise ValueError(f"cannot fetch the config of {model_id!r}: the Hugging Face hub is not "
                             f"reachable (offline) and it is not in the local cache; {hint}") from None
        try:
            cfg = AutoConfig.from_pretrained(model_id)
        except (OSError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"cannot fetch the config of {model_id!r} from the Hugging Face hub "
                             f"({msg}); {hint}") from None
    c = cfg.to_dict()
    return _spec_from_config(c, model_id, f"hub:{model_id}", hf_id=model_id)


def get_model(name_or_path) -> ModelSpec:
    """A ``ModelSpec`` from a built-in name, a config path, or a Hugging Face id (see module doc).
    Unknown names raise ValueError listing the built-in ones."""
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    s = str(name_or_path).strip()
    key = s.lower()
    if key in builtin_models():
        return _builtin(key)
    p = Path(s).expanduser()
    if p.exists() or s.endswith(".json") or os.sep in s and not _looks_like_hub_id(s):
        c, f = load_config_path(p)
        return _spec_from_config(c, f.parent.name if f.name == "config.json" else f.stem, f"path:{f}")
    if _looks_like_hub_id(s):
        return _from_hub(s)
    raise ValueError(f"unknown model {s!r}; valid names: {', '.join(model_names())}, or a path to a "
                     "config.json / a folder containing one, or a Hugging Face id (org/name) when online")


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


def model_table():
    """Built-in models as a pandas DataFrame, with KV bytes/token and weight bytes in their dtype."""
    import pandas as pd
    rows = []
    for n in model_names():
        m = get_model(n)
        d = m.as_dict()
        d.pop("source")
        d["kv_bytes_per_token"] = m.kv_bytes_per_token()
        d["weights_bytes"] = m.weights_bytes()
        rows.append(d)
    return pd.DataFrame(rows)
