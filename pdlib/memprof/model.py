"""Prompt ids for the breakdown profiler (the model itself comes from ``pdlib.models.build_causal_lm``).

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


def load_tokenizer(model: str):
    """The model's tokenizer (through pdlib's one tokenizer loader, ``pdlib.data.load_tokenizer``),
    or None when the folder has none or a Hub ID is neither cached nor reachable. A local
    tokenizer that is broken is an error, never a silent fallback to bytes."""
    p = Path(model)
    if p.is_dir() and not any((p / f).exists() for f in ("tokenizer.json", "vocab.json", "tokenizer.model",
                                                          "tokenizer_config.json")):
        return None
    from pdlib.data import load_tokenizer as load
    from pdlib.data.errors import DataError
    try:
        return load(str(model)).hf
    except DataError:
        if p.exists():
            raise
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
