"""The one Hugging Face loader of pdlib: configs, causal LMs (pretrained or seeded random
weights), and random-weight models materialised as folders for engines that only load folders.

``load_hf_config(ref)``: ``ref`` is a ``PretrainedConfig``, a dict with ``model_type``, a folder
holding ``config.json``, or a Hub id (local cache first). ``build_causal_lm(ref, weights=...,
dtype=..., device=...)``: ``weights="random"`` builds the architecture from the config under
``torch.manual_seed(seed)`` directly on the device in the dtype; ``"pretrained"`` calls
``from_pretrained``. Dtype names go through the one table in ``pdlib.theory`` (``dtype_name``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path

from .. import paths, theory

# The 2-layer Qwen3 that tests, the CPU smoke benchmarks and the breakdown notebook build with
# random weights (one definition; the grid's tiny-qwen3 in params/ uses the real Qwen3 vocabulary).
TINY_QWEN3 = {"vocab_size": 2048, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
              "max_position_embeddings": 4096, "tie_word_embeddings": True}

ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
                 "mistral": "MistralForCausalLM"}


def torch_dtype(dtype):
    """The torch dtype object of any spelling in ``theory``'s dtype table (``"bf16"``, ``"torch.float16"``)."""
    import torch
    return getattr(torch, theory.dtype_name(dtype))


def load_hf_config(ref):
    """A ``transformers.PretrainedConfig`` from a config object, a dict, a folder or a Hub id."""
    from transformers import AutoConfig, PretrainedConfig
    if isinstance(ref, PretrainedConfig):
        return ref
    if isinstance(ref, dict):
        d = dict(ref)
        if "model_type" not in d:
            raise ValueError("a config dict needs 'model_type' (e.g. 'qwen3', 'qwen2', 'llama')")
        d.pop("architectures", None)
        return AutoConfig.for_model(d.pop("model_type"), **d)
    p = Path(str(ref)).expanduser()
    if p.exists() or str(ref).startswith((".", "/", "~")):
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p}: no config.json (expected a model folder)")
        return AutoConfig.from_pretrained(p)
    try:
        return AutoConfig.from_pretrained(str(ref))          # Hub id (local cache first)
    except OSError as e:
        raise FileNotFoundError(f"model {ref!r}: cannot read its config ({e}); give a local folder "
                                "with config.json or a Hub ID in the local cache") from None


def build_causal_lm(ref, *, weights: str, dtype, device="cpu", seed: int = 0, **kwargs):
    """``(model, config)`` in eval mode. ``device="auto"`` shards pretrained weights over the
    visible GPUs (``device_map="auto"``); ``kwargs`` go to ``from_config``/``from_pretrained``
    (e.g. ``attn_implementation``). The config is copied: the model owns its own."""
    import torch
    from transformers import AutoModelForCausalLM
    td = torch_dtype(dtype)
    if weights == "random":
        if device == "auto":
            raise ValueError("device='auto' shards the model with from_pretrained(device_map='auto'): it needs "
                             "weights='pretrained' (and the accelerate package); random weights go on one device")
        config = copy.deepcopy(load_hf_config(ref))
        torch.manual_seed(seed)
        with torch.device(device or "cpu"):          # built in place on the target device
            m = AutoModelForCausalLM.from_config(config, dtype=td, **kwargs)
    elif weights == "pretrained":
        if not isinstance(ref, (str, Path)):
            raise ValueError("weights='pretrained' needs a model folder or Hub id, not a config "
                             "(use weights='random' to build from a config)")
        kw = {"dtype": td, **kwargs}
        if device == "auto":
            kw["device_map"] = "auto"                  # needs accelerate (transformers says so)
        try:
            m = AutoModelForCausalLM.from_pretrained(str(ref), **kw)
        except OSError as e:
            raise FileNotFoundError(f"model {ref!r}: no pretrained weights found ({e}); "
                                    "use weights='random' to build it from its config") from None
        if device not in (None, "auto"):
            m = m.to(device)
    else:
        raise ValueError(f"weights must be 'random' or 'pretrained', got {weights!r}")
    m.eval().requires_grad_(False)
    return m, m.config


def save_random_qwen3(out_dir, *, seed: int = 0, **config) -> Path:
    """A random-weight Qwen3 (fp32, after ``torch.manual_seed(seed)``) saved with
    ``save_pretrained``; ``config`` overrides entries of ``TINY_QWEN3``."""
    import torch
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.Qwen3Config(**{**TINY_QWEN3, **config}, torch_dtype="float32")
    transformers.Qwen3ForCausalLM(cfg).save_pretrained(out_dir)
    return Path(out_dir)


def materialize_config(name: str, config: dict) -> Path:
    """Write an inline model config as ``<cache>/models/<name>/config.json`` (for engines that
    load a folder, e.g. vLLM with dummy weights); rewritten only when it changed."""
    from pdlib.records import atomic_write_text
    conf = dict(config)
    conf.setdefault("architectures", [ARCHITECTURES.get(conf.get("model_type"), "")])
    text = json.dumps(conf, indent=2, sort_keys=True) + "\n"
    d = paths.cache_dir("models") / name
    f = d / "config.json"
    if not f.is_file() or f.read_text() != text:
        atomic_write_text(f, text)
    return d


def materialize_model(name: str, config: dict, dtype: str, seed: int = 0) -> Path:
    """An inline config as a loadable folder with *random* weights (seeded, saved with
    ``save_pretrained``) for engines that only load folders (vLLM). Built once per
    (name, config, dtype, seed) under ``<cache>/models``."""
    key = hashlib.sha1(json.dumps([config, dtype, seed], sort_keys=True).encode()).hexdigest()[:10]
    d = paths.cache_dir("models") / f"{name}-random-{key}"
    if (d / ".complete").is_file():
        return d
    model, _ = build_causal_lm(dict(config), weights="random", dtype=dtype, device="cpu", seed=seed)
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tmp.joinpath(".complete").write_text("ok\n")
    if d.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, d)
    return d
