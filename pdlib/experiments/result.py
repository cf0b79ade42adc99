"""What every experiment returns: a dataclass with ``to_json()``, a JSON-ready dict.

``jsonable`` is the one JSON-safe conversion (numpy to Python, NaN/inf to None, tuples to
lists, dataclasses to dicts); ``read_json`` / ``write_json`` are the JSON file primitives
(atomic writes through ``pdlib.records``). ``pdlib.report.results`` builds the
``{dataset}_results.json`` sections on them.
"""
from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from pdlib.records import atomic_write_json


def jsonable(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, tuples to lists,
    dataclasses to dicts (``to_json()`` where they have one)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):            # an experiment result: its own to_json()
        to_json = getattr(obj, "to_json", None)
        return to_json() if callable(to_json) else jsonable({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    return obj


def read_json(path, default=None):
    """The parsed file, ``default`` when it does not exist; invalid JSON names the file."""
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def write_json(path, obj) -> Path:
    """``jsonable(obj)`` written atomically to ``path``."""
    atomic_write_json(path, jsonable(obj))
    return Path(path)


LIVE = {"json": False}
"""Metadata of a dataclass field holding a live object (a ``RunResult``, a DataFrame): kept on
the result for figures and tables, never written by ``to_json``:
``run: object = field(default=None, repr=False, metadata=LIVE)``."""


class JsonResult:
    """Mixin for experiment dataclasses: ``to_json()`` is every field but the ``LIVE`` ones,
    in declaration order, leaving out the ``OPTIONAL`` fields that are None."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("json", True) and not (v is None and f.name in self.OPTIONAL):
                out[f.name] = v
        return jsonable(out)
