"""Model and prompt for the breakdown profiler.

Weights: ``random`` builds the architecture from a config (a folder with ``config.json``,
or a Hub ID already in the local cache) with seeded random weights, created directly in
the requested dtype; ``pretrained`` loads the real weights with ``from_pretrained``.

Prompt ids (documented rule):
1. the model folder (or Hub ID) has a tokenizer -> the prompt text is tokenized;
2. no tokenizer -> the prompt's UTF-8 bytes, each taken modulo ``vocab_size`` (a
   byte-level stand-in: deterministic and as long as the text in bytes);
3. ``prompt_length=N`` -> exactly N ids: the ids from 1./2. repeated cyclically (or
   truncated); with no prompt text, N pseudo-random ids from ``numpy.random.default_rng(0)``.
Every row of the batch carries the same ids, so no padding enters the KV cache.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_PROMPT = ("Explain, step by step, how a large language model serves many users at once: "
                  "what happens during prefill, what happens during decode, and where the GPU memory goes.")


def torch_dtype(torch, dtype: str):
    key = str(dtype).replace("torch.", "").lower()
    table = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    if key not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
    return table[key]


def load_config(model: str):
    from transformers import AutoConfig
    p = Path(model)
    if p.exists() and not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p}: no config.json in this folder")
    try:
        return AutoConfig.from_pretrained(str(model))
    except OSError as e:
        raise FileNotFoundError(f"model {model!r}: cannot read its config ({e}); give a local folder "
                                "with config.json or a Hub ID in the local cache") from None


def load_model(model: str, weights: str, dtype: str, device_map=None, seed: int = 0):
    """Returns (model, config) on CPU or per ``device_map`` (a device string such as ``cuda:0``,
    or ``auto`` for pretrained weights sharded over the visible GPUs); eval mode."""
    import torch
    from transformers import AutoModelForCausalLM
    td = torch_dtype(torch, dtype)
    if weights == "random":
        if device_map == "auto":
            raise ValueError("device='auto' shards the model with from_pretrained(device_map='auto'): it needs "
                             "weights='pretrained' (and the accelerate package); random weights go on one device")
        config = load_config(model)
        torch.manual_seed(seed)
        with torch.device(device_map or "cpu"):          # built in place on the target device
            m = AutoModelForCausalLM.from_config(config, dtype=td)
    elif weights == "pretrained":
        kw = {"dtype": td}
        if device_map == "auto":
            kw["device_map"] = "auto"                      # needs accelerate (transformers says so)
        try:
            m = AutoModelForCausalLM.from_pretrained(str(model), **kw)
        except OSError as e:
            raise FileNotFoundError(f"model {model!r}: no pretrained weights found ({e}); "
                                    "use weights='random' to build it from its config") from None
        if device_map not in (None, "auto"):
            m = m.to(device_map)
        config = m.config
    else:
        raise ValueError(f"weights must be 'random' or 'pretrained', got {weights!r}")
    m.eval()
    return m, config


def load_tokenizer(model: str):
    """The model's tokenizer, or None when the folder/ID has none."""
    p = Path(model)
    if p.is_dir() and not any((p / f).exists() for f in ("tokenizer.json", "vocab.json", "tokenizer.model",
                                                          "tokenizer_config.json")):
        return None
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(str(model))
    except (OSError, ValueError, ImportError, KeyError):
        return None


def prompt_ids(model: str, prompt: str | None, prompt_length: int | None, vocab_size: int,
               tokenizer="auto") -> tuple[list[int], str]:
    """Token ids of the prompt and how they were obtained (see the module docstring)."""
    if prompt_length is not None and int(prompt_length) < 1:
        raise ValueError(f"prompt_length must be >= 1, got {prompt_length}")
    if prompt is None and prompt_length is None:
        prompt = DEFAULT_PROMPT
    if prompt is not None and prompt == "":
        raise ValueError("prompt must not be empty")
    ids, source = None, None
    if prompt is not None:
        tok = load_tokenizer(model) if tokenizer == "auto" else tokenizer
        if tok is not None:
            ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
            source = f"tokenizer ({type(tok).__name__})"
            bad = [i for i in ids if i >= vocab_size]
            if bad:
                raise ValueError(f"tokenizer of {model} gives id {bad[0]} >= the model's vocab_size "
                                 f"{vocab_size}; use a matching tokenizer or --prompt-length")
        else:
            ids = [b % vocab_size for b in prompt.encode("utf-8")]
            source = "utf-8 bytes modulo vocab_size (no tokenizer in the model folder)"
    if prompt_length is not None:
        n = int(prompt_length)
        if ids:
            ids = (ids * (n // len(ids) + 1))[:n]
            source += f", repeated/truncated to {n} tokens"
        else:
            import numpy as np
            ids = np.random.default_rng(0).integers(0, vocab_size, n).tolist()
            source = f"{n} pseudo-random ids (numpy default_rng(0))"
    if not ids:
        raise ValueError("the prompt gives no tokens")
    return ids, source
