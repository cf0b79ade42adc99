"""Native engine: a Hugging Face causal LM with pdlib's paged KV cache, executing
``policy.ExclusiveBatching`` step by step through ``pdlib.steploop``.

``engine.NativeEngine`` (the run loop) drives ``model_runner.ModelRunner`` (model + KV cache +
CUDA-graph decode: public ``prefill``/``decode``); ``profiling`` times the runner;
``timing.StepTimer`` times steps (CUDA events on GPU, perf_counter on CPU)."""
from .config import NativeConfig
from .engine import NativeEngine
from .kv_cache import KVCache, KVCapacityError
from .model_runner import ModelRunner

__all__ = ["KVCache", "KVCapacityError", "ModelRunner", "NativeConfig", "NativeEngine"]
