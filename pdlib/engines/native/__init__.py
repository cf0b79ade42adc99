"""Native engine: a Hugging Face causal LM with pdlib's paged KV cache, executing
``policy.ExclusiveBatching`` step by step (see ``runner.NativeEngine``)."""
from .config import NativeConfig
from .kv_cache import KVCache, KVCapacityError
from .runner import NativeEngine

__all__ = ["KVCache", "KVCapacityError", "NativeConfig", "NativeEngine"]
