"""Printing and argument checks for CLI commands: one JSON object with ``--json``, else a short
aligned table; ``int_arg``/``float_arg`` parse an option within a documented range (the error
names the option and the range), ``check_finite`` refuses to print a NaN/inf result.

Bounds shared by the theory commands (``kstar``, ``memory``, ``simulate``, ``budget``):
slots N <= ``theory.N_MAX`` (10^6; k* and the throughput allocate O(N)), token counts
<= ``TOKENS_MAX`` (10^7), times <= ``SECONDS_MAX`` (10^6 s), p >= ``P_MIN`` (10^-12: mean
output <= 10^12 tokens), simulated steps <= ``STEPS_MAX`` (10^7; ~1.5 GB of step columns)."""
from __future__ import annotations

import argparse
import functools
import json
import math
import sys

import numpy as np

TOKENS_MAX = 10**7
SECONDS_MAX = 1e6
STEPS_MAX = 10**7
P_MIN = 1e-12


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


#: Result keys holding validity flags (lists of {name, holds, value, threshold, why}) and the
#: prefix of their rows in the human table: the "assumptions" block.
VALIDITY_KEYS = {"validity": "assume:", "validity_lengths": "assume_lengths:"}


def validity_list(flags) -> list[dict]:
    """``theory.lengths.Validity`` records (or their dicts) as JSON-able dicts; a value that is
    not a finite number (a Spearman rho of constant lengths) becomes None."""
    out = []
    for f in flags:
        d = dict(f if isinstance(f, dict) else f.to_dict())
        d = {"name": str(d["name"]), "holds": bool(d["holds"]), "value": _finite_or_none(d["value"]),
             "threshold": _finite_or_none(d["threshold"]), "why": str(d["why"])}
        out.append(d)
    return out


def _finite_or_none(v):
    v = _plain(v)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _flag_row(f: dict) -> str:
    num = (lambda x: "n/a" if x is None else f"{x:.4g}")
    return f"{'yes' if f['holds'] else 'no '}  value {num(f['value'])} vs threshold {num(f['threshold'])}"


def emit(obj: dict, as_json: bool, file=None) -> None:
    """One JSON object, or an aligned ``key  value`` table whose validity flags (``VALIDITY_KEYS``)
    come last as an assumptions block, one ``assume:NAME  yes|no  value V vs threshold T`` row each."""
    file = file or sys.stdout
    obj = _plain(obj)
    if as_json:
        print(json.dumps(obj, default=str), file=file)
        return
    rows = [(k, _fmt(v)) for k, v in obj.items() if not (k in VALIDITY_KEYS and isinstance(v, list))]
    for key, prefix in VALIDITY_KEYS.items():
        if isinstance(obj.get(key), list):
            rows += [(prefix + str(f["name"]), _flag_row(f)) for f in obj[key]]
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=file)


class CLIError(Exception):
    """An error the CLI prints as one line (no traceback) and exits with status 2."""


# --------------------------------------------------------------------------- argument ranges
# Type functions for argparse: a bad value raises ArgumentTypeError("must be ..."), which the
# pdlib parser prints as one line ``--OPT must be ..., got 'VALUE'`` (see ``pdlib.cli``).


def int_arg(lo: int, hi: int):
    """An integer option in ``lo..hi``."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo} and <= {hi}, got {s!r}")
        return v
    return parse


def choice_arg(choices):
    """One of ``choices`` (strings)."""
    def parse(s: str) -> str:
        if s not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}, got {s!r}")
        return s
    return parse


def _interval(lo, hi, lo_open, hi_open) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def in_range(v, lo, hi, lo_open=False, hi_open=False) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))


def float_arg(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, what: str | None = None):
    """A finite number in the interval lo..hi (open or closed ends); ``what`` overrides the
    range's wording in the error."""
    text = what or f"a number in {_interval(lo, hi, lo_open, hi_open)}"

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = float("nan")
        if not in_range(v, lo, hi, lo_open, hi_open):
            raise argparse.ArgumentTypeError(f"must be {text}, got {s!r}")
        return v
    return parse


def check_number(where: str, v, lo, hi, lo_open=False, hi_open=False) -> float:
    """``v`` (e.g. read from a file) as a float in the interval, else CLIError naming ``where``."""
    if not in_range(v, lo, hi, lo_open, hi_open):
        raise CLIError(f"{where} must be a number in {_interval(lo, hi, lo_open, hi_open)}, got {v!r}")
    return float(v)


RANGE_CAUSE = "the inputs are out of floating-point range (see the option ranges in --help)"
P_ARG = float_arg(P_MIN, 1.0, what=f"in (0, 1] and >= {P_MIN:g}")
SECONDS_ARG = float_arg(0.0, SECONDS_MAX)
POS_SECONDS_ARG = float_arg(0.0, SECONDS_MAX, lo_open=True)


def _nonfinite(obj, path=""):
    """(key, value) of the first NaN/inf number in a nested result, or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _nonfinite(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = _nonfinite(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return path, float(obj)
    return None


def check_finite(out: dict, cause: str) -> dict:
    """``out`` unchanged when every number in it is finite; else CLIError naming the result
    and ``cause`` (which options drive it out of floating-point range)."""
    hit = _nonfinite(_plain(out))
    if hit:
        raise CLIError(f"result {hit[0]} is {hit[1]}: {cause}")
    return out


def quiet_numerics(handler):
    """Run a command handler without numpy's floating-point warnings on stderr: an overflow
    either is refused by ``check_finite`` or does not reach the printed result."""
    @functools.wraps(handler)
    def run(args):
        with np.errstate(all="ignore"):
            return handler(args)
    return run
