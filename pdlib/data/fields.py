"""Field accessors for per-record parsers: each raises ``BadRecord`` naming the field."""
from __future__ import annotations

import math

from .errors import BadRecord


def get_str(row, name: str, *, allow_empty: bool = False, default=None) -> str:
    """``row[name]`` as a string; missing, non-string or (unless allowed) blank -> BadRecord."""
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
    return v


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
    """A token count from a trace cell: a finite non-negative integer (``"12"``, ``12``, ``"12.0"``)."""
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise BadRecord(name, "empty")
        try:
            f = float(s)
        except ValueError:
            raise BadRecord(name, f"{s[:40]!r} is not a number") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(name, f"{value!r} is not a number")
    else:
        f = float(value)
    if math.isnan(f) or math.isinf(f):
        raise BadRecord(name, f"{value!r} is not finite")
    if f != int(f):
        raise BadRecord(name, f"{value!r} is not an integer")
    n = int(f)
    if n < 0:
        raise BadRecord(name, f"negative ({n})")
    if n == 0 and not allow_zero:
        raise BadRecord(name, "zero tokens")
    return n
