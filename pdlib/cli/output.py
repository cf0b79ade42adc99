"""Printing for CLI commands: one JSON object with ``--json``, else a short aligned table."""
from __future__ import annotations

import json
import sys

import numpy as np


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def emit(obj: dict, as_json: bool, file=None) -> None:
    file = file or sys.stdout
    obj = _plain(obj)
    if as_json:
        print(json.dumps(obj, default=str), file=file)
        return
    width = max((len(k) for k in obj), default=0)
    for k, v in obj.items():
        print(f"{k:<{width}}  {_fmt(v)}", file=file)


class CLIError(Exception):
    """An error the CLI prints as one line (no traceback) and exits with status 2."""
