"""Serving-profiler configuration: the seed's environment variables, overridable by CLI flags.

pdlib's defaults (the seed's env-var names; values chosen here and documented in ``ENV_VARS``):
``VLLM_URL=http://127.0.0.1:8000``, ``MODEL_NAME=`` (empty: the first model of ``/v1/models``),
``INPUT_LENS=128,512,2048``, ``OUTPUT_LENS=128,512``, ``CONCURRENCIES=1,8,32``,
``PREFIX_MODES=low,high``, ``N_PER_CONDITION=20``, ``GPU_INTERVAL_MS=100``, ``GPU_INDICES=0``,
``OUTPUT_DIR=results/memory_profile``, ``RUN_TAG=`` (empty), ``REQUEST_TIMEOUT=300`` (seconds).
pdlib additions: ``TOKENIZER`` (path or name; ``none`` sends token-id prompts),
``METRICS_INTERVAL_MS=100`` (period at which a ``/metrics`` scrape is started), ``SEED=0``.

Every setting has one check (``check_value``; the range is in ``RANGES``), used by the config
itself, by ``from_env`` (the error names the variable) and by the CLI's option types (the
error names the flag).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

PREFIX_MODES = ("low", "high")
TOKENS_MAX = 10**7
SECONDS_MAX = 1e6
MS_MAX = 3_600_000


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
    metrics_interval_ms: int = 100
    seed: int = 0

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name)))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def replace(self, **changes) -> ServingConfig:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update({k: v for k, v in changes.items() if v is not None})
        return ServingConfig(**d)


# --------------------------------------------------------------------------- value checks
def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError
    if isinstance(v, float) and not v.is_integer():
        raise ValueError
    return int(v)


def _ints_in(lo, hi):
    def check(v):
        vals = tuple(_int(x) for x in (v if isinstance(v, (list, tuple)) else (v,)))
        if not vals or not all(lo <= x <= hi for x in vals):
            raise ValueError
        return vals
    return check


def _int_in(lo, hi):
    def check(v):
        x = _int(v)
        if not lo <= x <= hi:
            raise ValueError
        return x
    return check


def _seconds(v):
    x = float(v)
    if not (math.isfinite(x) and 0 < x <= SECONDS_MAX):
        raise ValueError
    return x


def _url(v):
    s = str(v).strip().rstrip("/")
    if not (s.startswith(("http://", "https://")) and len(s.split("://", 1)[1]) > 0) or any(c.isspace() for c in s):
        raise ValueError
    return s


def _modes(v):
    vals = tuple(str(m).strip().lower() for m in (v if isinstance(v, (list, tuple)) else (v,)))
    if not vals or any(m not in PREFIX_MODES for m in vals):
        raise ValueError
    return vals


def _tag(v):
    s = str(v)
    if "/" in s or "\\" in s or s in (".", ".."):
        raise ValueError
    return s


def _nonempty(v):
    s = str(v)
    if not s.strip():
        raise ValueError
    return s


# field -> (check returning the normalised value or raising ValueError, what it must be)
RANGES = {
    "vllm_url": (_url, "an http:// or https:// URL"),
    "model_name": (str, "a model name"),
    "input_lens": (_ints_in(1, TOKENS_MAX), f"one or more integers in 1..{TOKENS_MAX}"),
    "output_lens": (_ints_in(1, TOKENS_MAX), f"one or more integers in 1..{TOKENS_MAX}"),
    "concurrencies": (_ints_in(1, 100_000), "one or more integers in 1..100000"),
    "prefix_modes": (_modes, f"one or more of {', '.join(PREFIX_MODES)}"),
    "n_per_condition": (_int_in(1, 10**6), "an integer in 1..1000000"),
    "gpu_interval_ms": (_int_in(1, MS_MAX), f"an integer in 1..{MS_MAX} (milliseconds)"),
    "gpu_indices": (_ints_in(0, 1023), "one or more integers in 0..1023"),
    "output_dir": (_nonempty, "a folder path"),
    "run_tag": (_tag, "a name without path separators"),
    "request_timeout": (_seconds, f"a finite number of seconds in (0, {SECONDS_MAX:g}]"),
    "tokenizer": (str, "a tokenizer path or name, or 'none'"),
    "metrics_interval_ms": (_int_in(1, MS_MAX), f"an integer in 1..{MS_MAX} (milliseconds)"),
    "seed": (_int_in(0, 2**32 - 1), "an integer in 0..4294967295"),
}


def check_value(field: str, value):
    """``value`` normalised for ``field``; ValueError ``"<field> must be ..., got ..."`` if out of range."""
    check, what = RANGES[field]
    try:
        return check(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{field} must be {what}, got {value!r}") from None


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


def parse_value(field: str, text: str, name: str | None = None):
    """Parse and check one setting from its text form; errors name ``name`` (default: the
    environment variable), e.g. ``REQUEST_TIMEOUT='nan': must be a finite number ...``."""
    var, parse = ENV_VARS[field]
    name = name or var
    try:
        value = parse(text)
    except ValueError as e:
        raise ValueError(f"{name}={text!r}: cannot parse ({e})") from None
    try:
        return check_value(field, value)
    except ValueError:
        raise ValueError(f"{name}={text!r}: must be {RANGES[field][1]}") from None


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
