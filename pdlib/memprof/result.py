"""The memory-breakdown result (seed 002): one ``Breakdown`` for the hf and the native path.

``Breakdown`` owns the JSON (schema ``pdlib.memory_breakdown/1``): ``to_json()`` gives the
JSON-ready dict with the keys in their fixed order (``schema``, ``memory_breakdown``,
``model_info``, ``gpu_info``, ``device``, ``measurements``, ``repeats``, ``per_layer``,
``units``, ``null_reasons``, ``notes``, ``environment`` and, for a sweep cell, ``settings``),
``from_json(d)`` reads it back (a dict, JSON text or a file ``Path``), ``write(path)``
writes it atomically (``pdlib.records.atomic_write_json``). The blocks both paths build
alike are its static methods: ``summarize`` (per-component means and spread over the
repeats), ``repeats_block``, ``model_info_block``, ``overhead_block`` (the residual),
``cpu_gpu_block`` and ``environment_block``. GB = 1e9 bytes.
"""
from __future__ import annotations

import copy
import json
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
SCHEMA = "pdlib.memory_breakdown/1"
UNITS = "GB = 1e9 bytes"
COMPONENTS = ("model_weights_gb", "kv_cache_gb", "activations_gb", "framework_overhead_gb", "total_gb")
_KEYS = ("schema", "memory_breakdown", "model_info", "gpu_info", "device", "measurements", "repeats",
         "per_layer", "units", "null_reasons", "notes", "environment")


def gb(b):
    """Bytes -> GB (1e9), None stays None."""
    return None if b is None else b / GB


def spread(values):
    """mean/std/min/max/n of the non-None values, or None when there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


@dataclass
class Breakdown:
    """One memory-breakdown profile. The fields are the JSON's top-level keys (see the module
    docstring); ``settings`` is set only by notebook 05's sweep (the cell's settings)."""
    memory_breakdown: dict
    model_info: dict
    gpu_info: dict
    device: str
    measurements: dict
    repeats: dict
    per_layer: dict | None
    null_reasons: dict
    notes: list
    environment: dict
    schema: str = SCHEMA
    units: str = UNITS
    settings: dict | None = None

    # ---- the blocks both paths build alike
    @staticmethod
    def summarize(values) -> tuple[dict, dict]:
        """``(memory_breakdown, spread)`` from the per-repeat component values (GB): the mean of
        each component over the repeats, and its spread."""
        sp = {c: spread([v[c] for v in values]) for c in COMPONENTS}
        return {c: (sp[c]["mean"] if sp[c] else None) for c in COMPONENTS}, sp

    @staticmethod
    def repeats_block(values, spread_, n, warmup_runs=1) -> dict:
        """The ``repeats`` block: the per-repeat values and their spread."""
        return {"n": int(n), "warmup_runs": warmup_runs, "values": values, "spread": spread_}

    @staticmethod
    def model_info_block(config, *, name, dtype, num_parameters, prompt_length, generated_length, batch_size,
                         weights, engine, cache, prompt_source) -> dict:
        """The ``model_info`` block: the run's shape and the config's architecture numbers (None
        where the config has no such attribute)."""
        return {"name": str(name), "dtype": dtype, "num_parameters": int(num_parameters),
                "prompt_length": prompt_length, "generated_length": generated_length,
                "total_sequence_length": prompt_length + generated_length, "batch_size": batch_size,
                "weights": weights, "engine": engine, "cache": cache, "prompt_source": prompt_source,
                **{k: getattr(config, k, None) for k in ("model_type", "num_hidden_layers", "num_key_value_heads",
                                                         "head_dim", "hidden_size", "intermediate_size",
                                                         "vocab_size")}}

    @staticmethod
    def overhead_block(memory_breakdown, method) -> dict:
        """``measurements.framework_overhead``: the residual and whether it is negative."""
        v = memory_breakdown["framework_overhead_gb"]
        return {"gb": v, "negative": (v or 0) < 0, "method": method}

    @staticmethod
    def cpu_gpu_block(null_reasons) -> dict:
        """``gpu_info`` of a CPU run (every field null, the reasons added to ``null_reasons``)."""
        null_reasons["gpu_info.devices"] = "run on CPU: no GPU memory to report"
        null_reasons["gpu_info.multi_gpu_overhead_gb"] = "run on CPU: the model is not sharded over GPUs"
        return {"num_gpus": 0, "devices": None, "multi_gpu_overhead_gb": None}

    @staticmethod
    def environment_block(**extra) -> dict:
        """torch/transformers/python versions and the machine, then ``extra``."""
        import torch
        import transformers
        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "python": platform.python_version(), "machine": platform.machine(), **extra}

    # ---- the JSON
    def to_json(self) -> dict:
        """The JSON-ready dict (a deep copy: editing it leaves this object as it is)."""
        d = {k: getattr(self, k) for k in _KEYS}
        if self.settings is not None:
            d["settings"] = self.settings
        return copy.deepcopy(d)

    @classmethod
    def from_json(cls, d) -> Breakdown:
        """A ``Breakdown`` from ``to_json()``'s dict, its JSON text or a JSON file path."""
        if isinstance(d, Path):
            d = d.read_text()
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, dict):
            raise ValueError(f"a memory breakdown is a JSON object, got {type(d).__name__}")  # noqa: TRY004
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a memory breakdown: schema {d.get('schema')!r}, expected {SCHEMA!r}")
        missing = [k for k in _KEYS if k not in d]
        extra = sorted(set(d) - set(_KEYS) - {"settings"})
        if missing or extra:
            raise ValueError(f"memory breakdown: missing keys {missing}, unknown keys {extra}")
        return cls(**copy.deepcopy(d))

    def write(self, path) -> Path:
        """Write the JSON atomically (``pdlib.records.atomic_write_json``); returns the path."""
        from pdlib.records import atomic_write_json
        atomic_write_json(path, self.to_json())
        return Path(path)


def null_paths(obj, prefix=""):
    """Dotted paths of every None in a profile (for the 'every null has a reason' check)."""
    if isinstance(obj, Breakdown):
        obj = obj.to_json()
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            if k == "null_reasons":
                continue
            out += null_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in null_paths(v, f"{prefix}[{i}]")]
    return [prefix] if obj is None else []
