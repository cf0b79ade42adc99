"""Stock vLLM (V1) as a pdlib engine: exclusive batching injected through ``scheduler_cls``.

``VLLMEngine`` (engine.py) runs workloads and profiles; the scheduler classes live in
``scheduler.py`` (imported by vLLM by qualified name). vLLM is imported only when an engine
is built, so ``import pdlib.engines.vllm`` works without it.
"""
from .engine import VLLMEngine

__all__ = ["VLLMEngine"]
