"""Field accessors for per-record parsers: each raises ``BadRecord`` naming the field."""
from __future__ import annotations

import math

from pdlib.workload import MAX_TOKENS, MAX_TOKENS_TEXT

from .errors import BadRecord


def check_text(v: str, name: str) -> str:
    """``v`` if it is encodable text; a lone surrogate (e.g. ``"\\ud800"`` from a JSON escape) -> BadRecord."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRecord(name, f"not valid Unicode (lone surrogate U+{ord(v[e.start]):04X} at character {e.start})") \
            from None
    return v


def get_str(row, name: str, *, allow_empty: bool = False, default=None) -> str:
    """``row[name]`` as a string; missing, non-string, invalid Unicode or (unless allowed) blank -> BadRecord."""
    if not isinstance(row, dict):
        raise BadRecord(None, f"record is {type(row).__name__}, expected an object")
    if name not in row or row[name] is None:
        if default is not None:
            return default
        raise BadRecord(name, "missing")
    v = row[name]
    if not isinstance(v, str):
        raise BadRecord(name, f"is {type(v).__name__}, expected a string")
    if not allow_empty and not v.strip():
        raise BadRecord(name, "empty")
    return check_text(v, name)


def get_list(row, name: str) -> list:
    if not isinstance(row, dict):
        raise BadRecord(None, f"record is {type(row).__name__}, expected an object")
    v = row.get(name)
    if v is None:
        raise BadRecord(name, "missing")
    if not isinstance(v, (list, tuple)) and not hasattr(v, "tolist"):
        raise BadRecord(name, f"is {type(v).__name__}, expected a list")
    v = list(v.tolist() if hasattr(v, "tolist") else v)
    if not v:
        raise BadRecord(name, "empty list")
    return v


def parse_count(value, name: str, *, allow_zero: bool = False) -> int:
    """A token count from a trace cell: an integer in ``1..MAX_TOKENS`` (``"12"``, ``12``, ``"12.0"``);
    anything else -> BadRecord naming the field and, for out-of-range numbers, the allowed range."""
    allowed = f"allowed {0 if allow_zero else 1}..{MAX_TOKENS_TEXT}"
    raw = value.strip() if isinstance(value, str) else repr(value)
    shown = repr(raw[:40] + ("..." if len(raw) > 40 else ""))
    if isinstance(value, str):
        if not raw:
            raise BadRecord(name, "empty")
        digits = raw.lstrip("+-")
        if digits.isdigit() and len(digits) > 12:   # exact; no float rounding, no int() digit limit
            raise BadRecord(name, f"{'negative' if raw[0] == '-' else 'too large'} ({shown}; {allowed})")
        try:
            f = float(raw)
        except ValueError:
            raise BadRecord(name, f"not a number ({shown}; {allowed})") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(name, f"not a number ({shown}; {allowed})")
    elif isinstance(value, int):
        if not -MAX_TOKENS <= value <= MAX_TOKENS:
            raise BadRecord(name, f"{'negative' if value < 0 else 'too large'} ({shown}; {allowed})")
        f = float(value)
    else:
        f = value
    if math.isnan(f) or math.isinf(f):
        raise BadRecord(name, f"not finite ({shown}; {allowed})")
    if f != math.floor(f):
        raise BadRecord(name, f"not an integer ({shown}; {allowed})")
    if f < 0:
        raise BadRecord(name, f"negative ({shown}; {allowed})")
    if f == 0 and not allow_zero:
        raise BadRecord(name, f"zero tokens ({allowed})")
    if f > MAX_TOKENS:
        raise BadRecord(name, f"too large ({shown}; {allowed})")
    return int(f)
