"""KV-cache bytes per token from a model config, and the one dtype table of pdlib."""
from __future__ import annotations

import math

# --------------------------------------------------------------------------- KV bytes from a config

# The one dtype table of pdlib: every accepted spelling -> (torch attribute name, short name,
# bytes per element). ``pdlib.models.torch_dtype`` maps the torch name to the torch object.
_CANON = {"float32": ("fp32", 4), "float16": ("fp16", 2), "bfloat16": ("bf16", 2),
          "float8_e4m3fn": ("fp8", 1), "float8_e5m2": ("fp8_e5m2", 1)}
_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16",
            "bf16": "bfloat16", "fp8": "float8_e4m3fn", "float8": "float8_e4m3fn",
            "fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}
DTYPE_BYTES = {**{k: b for k, (_, b) in _CANON.items()}, **{a: _CANON[c][1] for a, c in _ALIASES.items()}}


def dtype_name(dtype) -> str:
    """Canonical (torch attribute) name of a dtype spelling: ``"bf16"`` -> ``"bfloat16"``."""
    key = str(dtype).replace("torch.", "").lower()
    key = _ALIASES.get(key, key)
    if key not in _CANON:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    return key


def dtype_short(dtype) -> str:
    """Short name of a dtype spelling: ``"bfloat16"`` -> ``"bf16"``."""
    return _CANON[dtype_name(dtype)][0]


def dtype_bytes(dtype) -> int:
    """Bytes per element of a dtype spelling."""
    return _CANON[dtype_name(dtype)][1]


def kv_bytes_per_token(config, dtype: str | None = None) -> int:
    """KV-cache bytes per token: ``2 * layers * kv_heads * head_dim * bytes_per_element``
    (K and V per layer; GQA through num_key_value_heads). ``config`` is a Hugging Face
    config dict or object; ``dtype`` defaults to the config's torch_dtype/dtype.

    Refused with ValueError (their KV per token is not this product): sliding-window
    or mixed layer types (``use_sliding_window``, non-full ``layer_types``, Mistral-style
    ``sliding_window`` without ``use_sliding_window``), and latent attention (MLA,
    ``kv_lora_rank``)."""
    c = config if isinstance(config, dict) else config.to_dict()
    c = c.get("text_config", c) if "num_hidden_layers" not in c else c
    if not isinstance(c, dict):
        raise ValueError(f"config's text_config must be a mapping, got {c!r}")  # noqa: TRY004
    name = c.get("model_type", "model")
    if c.get("kv_lora_rank"):
        raise ValueError(f"{name}: latent attention (kv_lora_rank) is not supported by the 2*L*H*d formula")
    layer_types = c.get("layer_types")
    if layer_types and not isinstance(layer_types, list):
        raise ValueError(f"{name}: layer_types must be a list, got {layer_types!r}")
    if layer_types and any(t != "full_attention" for t in layer_types):
        raise ValueError(f"{name}: mixed layer types {sorted(set(layer_types))} are not supported; "
                         "only full-attention models have a constant KV per token")
    if c.get("use_sliding_window") or ("use_sliding_window" not in c and c.get("sliding_window")):
        raise ValueError(f"{name}: sliding-window attention (sliding_window={c.get('sliding_window')}) "
                         "bounds the cache per layer; refusing to report a per-token figure")
    for key in ("num_hidden_layers", "num_attention_heads"):
        if key not in c:
            raise ValueError(f"{name}: config has no {key!r}")
    layers = config_int(c, "num_hidden_layers", name)
    heads = config_int(c, "num_attention_heads", name)
    kv_heads = config_int(c, "num_key_value_heads", name) if c.get("num_key_value_heads") else heads
    if c.get("head_dim"):
        head_dim = config_int(c, "head_dim", name)
    elif "hidden_size" in c:
        head_dim = config_int(c, "hidden_size", name) // heads
    else:
        raise ValueError(f"{name}: config has neither 'head_dim' nor 'hidden_size'")
    dt = dtype or c.get("torch_dtype") or c.get("dtype") or "float16"
    return 2 * layers * kv_heads * head_dim * dtype_bytes(dt)


CONFIG_INT_MAX = 10**7   # bound on an architecture field (layers, heads, sizes) of a config


def config_int(c: dict, key: str, name: str = "model") -> int:
    """``c[key]`` as an integer in 1..CONFIG_INT_MAX (integral floats accepted), else ValueError."""
    v = c[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v != int(v) or not 1 <= v <= CONFIG_INT_MAX:
        raise ValueError(f"{name}: config field {key} must be an integer in 1..{CONFIG_INT_MAX}, got {v!r}")
    return int(v)


def kv_bytes_per_token_seed004(hidden_size: int = 2048, num_layers: int = 24, bytes_per_element: int = 2) -> int:
    """Seed 004's *incorrect* figure ``2 * layers * hidden_size * bytes`` (24 layers, no GQA):
    196,608 B/token for "Qwen3-1.7B" — kept only for the side-by-side budget."""
    return 2 * num_layers * hidden_size * bytes_per_element
