"""Serving-profiler configuration: the seed's environment variables, overridable by CLI flags.

pdlib's defaults (the seed's env-var names; values chosen here and documented in ``ENV_VARS``):
``VLLM_URL=http://127.0.0.1:8000``, ``MODEL_NAME=`` (empty: the first model of ``/v1/models``),
``INPUT_LENS=128,512,2048``, ``OUTPUT_LENS=128,512``, ``CONCURRENCIES=1,8,32``,
``PREFIX_MODES=low,high``, ``N_PER_CONDITION=20``, ``GPU_INTERVAL_MS=100``, ``GPU_INDICES=0``,
``OUTPUT_DIR=results/memory_profile``, ``RUN_TAG=`` (empty), ``REQUEST_TIMEOUT=300`` (seconds).
pdlib additions: ``TOKENIZER`` (path or name; ``none`` sends token-id prompts),
``METRICS_INTERVAL_MS=250`` (Prometheus scrape period), ``SEED=0``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

PREFIX_MODES = ("low", "high")


@dataclass(slots=True)
class ServingConfig:
    vllm_url: str = "http://127.0.0.1:8000"
    model_name: str = ""
    input_lens: tuple[int, ...] = (128, 512, 2048)
    output_lens: tuple[int, ...] = (128, 512)
    concurrencies: tuple[int, ...] = (1, 8, 32)
    prefix_modes: tuple[str, ...] = ("low", "high")
    n_per_condition: int = 20
    gpu_interval_ms: int = 100
    gpu_indices: tuple[int, ...] = (0,)
    output_dir: str = "results/memory_profile"
    run_tag: str = ""
    request_timeout: float = 300.0
    tokenizer: str = ""
    metrics_interval_ms: int = 250
    seed: int = 0

    def __post_init__(self):
        for name in ("input_lens", "output_lens", "concurrencies"):
            vals = tuple(int(v) for v in getattr(self, name))
            if not vals or min(vals) < 1:
                raise ValueError(f"{name}: need one or more positive integers, got {vals}")
            setattr(self, name, vals)
        self.gpu_indices = tuple(int(v) for v in self.gpu_indices)
        self.prefix_modes = tuple(str(m).strip().lower() for m in self.prefix_modes)
        bad = [m for m in self.prefix_modes if m not in PREFIX_MODES]
        if bad or not self.prefix_modes:
            raise ValueError(f"prefix_modes: each must be one of {PREFIX_MODES}, got {self.prefix_modes}")
        if int(self.n_per_condition) < 1:
            raise ValueError(f"n_per_condition must be >= 1, got {self.n_per_condition}")
        if float(self.request_timeout) <= 0 or int(self.gpu_interval_ms) < 1 or int(self.metrics_interval_ms) < 1:
            raise ValueError("request_timeout, gpu_interval_ms and metrics_interval_ms must be positive")
        self.vllm_url = str(self.vllm_url).rstrip("/")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def replace(self, **changes) -> ServingConfig:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update({k: v for k, v in changes.items() if v is not None})
        return ServingConfig(**d)


# field -> (environment variable, parser)
def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.replace(" ", "").split(",") if x)


def _strs(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


ENV_VARS = {
    "vllm_url": ("VLLM_URL", str), "model_name": ("MODEL_NAME", str),
    "input_lens": ("INPUT_LENS", _ints), "output_lens": ("OUTPUT_LENS", _ints),
    "concurrencies": ("CONCURRENCIES", _ints), "prefix_modes": ("PREFIX_MODES", _strs),
    "n_per_condition": ("N_PER_CONDITION", int), "gpu_interval_ms": ("GPU_INTERVAL_MS", int),
    "gpu_indices": ("GPU_INDICES", _ints), "output_dir": ("OUTPUT_DIR", str), "run_tag": ("RUN_TAG", str),
    "request_timeout": ("REQUEST_TIMEOUT", float), "tokenizer": ("TOKENIZER", str),
    "metrics_interval_ms": ("METRICS_INTERVAL_MS", int), "seed": ("SEED", int),
}


def parse_value(field: str, text: str):
    """Parse one setting from its text form (env var or CLI flag); errors name the variable."""
    var, parse = ENV_VARS[field]
    try:
        return parse(text)
    except ValueError as e:
        raise ValueError(f"{var}={text!r}: cannot parse ({e})") from None


def from_env(env=None, **overrides) -> ServingConfig:
    """Config from environment variables (``os.environ`` by default); non-None overrides win."""
    env = os.environ if env is None else env
    values = {}
    for field, (var, _) in ENV_VARS.items():
        if env.get(var) not in (None, ""):
            values[field] = parse_value(field, env[var])
        elif var in ("RUN_TAG", "MODEL_NAME", "TOKENIZER") and var in env:
            values[field] = ""
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServingConfig(**values)
