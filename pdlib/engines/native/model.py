"""Load a Hugging Face decoder-only causal LM for the native engine.

``weights="pretrained"``: ``from_pretrained`` (local folder or Hub id). ``weights="random"``:
built from the config (a folder's config.json, a config object or a dict with
``model_type``), initialised with the model's own init under ``torch.manual_seed(seed)``,
directly on the target device in the target dtype. Full-attention models only (Qwen3,
Qwen2, Llama, Mistral without sliding window, ...): the KV cache is 2*L*H_kv*d per token.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ... import theory
from .attention import register

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_hf_config(model):
    """A ``PretrainedConfig`` from a config object, a dict (``model_type``), a folder or a Hub id."""
    from transformers import AutoConfig, PretrainedConfig
    if isinstance(model, PretrainedConfig):
        return model
    if isinstance(model, dict):
        d = dict(model)
        if "model_type" not in d:
            raise ValueError("a config dict needs 'model_type' (e.g. 'qwen3', 'qwen2', 'llama')")
        return AutoConfig.for_model(d.pop("model_type"), **d)
    p = Path(str(model)).expanduser()
    if p.exists() or str(model).startswith((".", "/", "~")):
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p}: no config.json (expected a model folder)")
        return AutoConfig.from_pretrained(p)
    return AutoConfig.from_pretrained(str(model))        # Hub id


def check_supported(config) -> int:
    """KV bytes per token at the config's dtype; refuses encoder-decoder and non-full attention."""
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{config.model_type}: encoder-decoder models are not supported (decoder-only only)")
    return theory.kv_bytes_per_token(config, "float32")


def load_model(model, *, weights: str, dtype: str, device, seed: int = 0):
    """Returns ``(model, config)`` in eval mode, no grad, attention = pdlib's paged attention."""
    from transformers import AutoModelForCausalLM
    name = register()
    config = copy.deepcopy(load_hf_config(model))      # the model owns its config (attn impl is set on it)
    check_supported(config)
    tdtype = TORCH_DTYPES[dtype]
    if weights == "random":
        torch.manual_seed(seed)
        with torch.device(device):
            m = AutoModelForCausalLM.from_config(config, dtype=tdtype, attn_implementation=name)
    else:
        if not isinstance(model, (str, Path)):
            raise ValueError("weights='pretrained' needs a model folder or Hub id, not a config "
                             "(use weights='random' to build from a config)")
        m = AutoModelForCausalLM.from_pretrained(str(model), dtype=tdtype, attn_implementation=name)
        m = m.to(device)
    if m.config._attn_implementation != name:
        raise RuntimeError(f"transformers did not install attention {name!r} "
                           f"(got {m.config._attn_implementation!r}) for {config.model_type}")
    m.eval().requires_grad_(False)
    return m, m.config
