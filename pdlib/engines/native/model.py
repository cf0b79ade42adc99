"""The native engine's model: a Hugging Face decoder-only causal LM loaded through pdlib's one
loader (``pdlib.models.build_causal_lm``) with pdlib's paged attention installed.

Full-attention models only (Qwen3, Qwen2, Llama, Mistral without sliding window, ...): the KV
cache is 2*L*H_kv*d per token.
"""
from __future__ import annotations

from ... import theory
from ...models import build_causal_lm, load_hf_config
from .attention import register


def check_supported(config) -> int:
    """KV bytes per token at fp32; refuses encoder-decoder models."""
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{config.model_type}: encoder-decoder models are not supported (decoder-only only)")
    return theory.kv_bytes_per_token(config, "float32")


def load_model(model, *, weights: str, dtype: str, device, seed: int = 0):
    """Returns ``(model, config)`` in eval mode, no grad, attention = pdlib's paged attention."""
    name = register()
    check_supported(load_hf_config(model))
    m, config = build_causal_lm(model, weights=weights, dtype=dtype, device=device, seed=seed,
                                attn_implementation=name)
    if config._attn_implementation != name:
        raise RuntimeError(f"transformers did not install attention {name!r} "
                           f"(got {config._attn_implementation!r}) for {config.model_type}")
    return m, config


def eos_token_ids(model) -> set:
    """The EOS ids of a model: its config's, else its generation config's."""
    eos = getattr(model.config, "eos_token_id", None)
    gen = getattr(model, "generation_config", None)
    eos = eos if eos is not None else getattr(gen, "eos_token_id", None)
    return set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
