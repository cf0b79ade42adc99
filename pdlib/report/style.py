"""THE formatting of report tables and figure captions (one owner: every table and figure of
``pdlib.report`` goes through here; nothing else formats numbers for display).

API (four functions, and ``auto_header``):

* ``fmt(x, digits=3, signed=False) -> str`` — one value: None/NaN/inf -> "—"; bool -> "yes"/"no";
  an integer, or a float with no fractional part, as an integer with thousands separators
  ("42,667", "128"); any other number with ``digits`` significant digits ("12.3", "0.00128",
  "2.49e-5" below 1e-3), a magnitude >= 10**digits rounded to whole units with separators
  ("110,430": never shown in powers of ten); ``signed``: "+" on positive numbers (errors, gaps).
* headers: a column without one in ``headers`` gets its unit from its suffix (``auto_header``:
  ``requests_per_s`` -> "requests/s", ``kv_cache_gb`` -> "kv cache (GB)", ``error_pct`` -> "error (%)").
* ``describe(df, headers=None, caption=None, signed=()) -> df`` — record on the DataFrame
  (``df.attrs``) how it is shown: ``headers`` maps a column (or index) name to its header with
  the unit ("throughput (requests/s)"), ``caption`` says what the table is and what to look at,
  ``signed`` names the columns shown with their sign. Table functions return the DataFrame
  (data stay data: tests and callers index it by the raw names) and call this last.
* ``table(df, headers=None, caption=None, signed=(), max_cols=8) -> Table`` — the displayable,
  formatted table (pandas Styler inside; arguments override what ``describe`` recorded).
  Wider than ``max_cols`` columns it is split into column groups, each repeating the index; every
  group sits in a horizontally scrolling box, long headers wrap. ``Table.data`` is the DataFrame,
  ``Table.to_html()`` the HTML (what ``nbconvert --no-input`` exports), ``str(Table)`` plain text.
* ``figure_caption(fig, text) -> fig`` — a caption under the figure's axes ("what to look at"),
  drawn in the figure so the saved PDF/PNG carry it too.

Usage in a notebook cell: ``style.table(tables.sweep_table(exp))``.
"""
from __future__ import annotations

import math
import numbers
import textwrap

import numpy as np
import pandas as pd

__all__ = ["Table", "auto_header", "describe", "figure_caption", "fmt", "table"]

NA = "—"
_KEY = "pdlib_style"
_TABLE_CSS = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 0.9em; margin: 0.3em 0 1em 0;"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: normal; "
                                     "color: #333; padding: 0.2em 0 0.4em 0; max-width: 60em;"},
    {"selector": "th", "props": "white-space: normal; max-width: 11em; vertical-align: bottom; "
                                "text-align: right; padding: 0.2em 0.6em; border-bottom: 1px solid #999;"},
    {"selector": "th.row_heading", "props": "text-align: left; vertical-align: top; border-bottom: none;"},
    {"selector": "td", "props": "white-space: nowrap; text-align: right; padding: 0.2em 0.6em; "
                                "font-variant-numeric: tabular-nums;"},
    {"selector": "tbody tr:nth-child(even)", "props": "background: #f6f6f6;"},
]
_BOX = '<div class="pdlib-table" style="overflow-x: auto; max-width: 100%; margin-bottom: 0.6em;">{}</div>'


def fmt(x, digits: int = 3, signed: bool = False) -> str:
    """One value as shown in a report (rules in the module docstring)."""
    if x is None or x is pd.NA or x is pd.NaT:
        return NA
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, numbers.Integral):
        return f"{int(x):+,d}" if signed and x != 0 else f"{int(x):,d}"
    if not isinstance(x, numbers.Real):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return NA
    sign = "+" if signed and x > 0 else ""
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e15 or abs(x) >= 10 ** digits:
        return f"{sign}{round(x):,d}" if abs(x) < 1e15 else f"{sign}{x:.{digits - 1}e}"
    if abs(x) < 1e-3:
        m, e = f"{x:.{digits - 1}e}".split("e")
        return f"{sign}{m.rstrip('0').rstrip('.')}e{int(e)}"
    s = f"{x:.{digits}g}"
    if "e" in s:                                 # 999.6 rounds up to 1e+03
        return f"{sign}{round(x):,d}"
    if "." not in s and "e" not in s:           # 0.99987 -> "1.00", 42.95 -> "43.0": not an exact integer
        s = f"{x:#.{digits}g}".rstrip(".")
    return sign + s


def num(v, fmt_spec: str | None = None) -> str:
    """One number in a Markdown line: :func:`fmt` (3 significant digits) unless a format spec
    such as ``"{:+.1f}"`` is given; None, NaN and inf read as ``NA``."""
    if v is None:
        return NA
    try:
        if not math.isfinite(float(v)):
            return NA
    except (TypeError, ValueError):
        return str(v)
    return fmt(v) if fmt_spec is None else fmt_spec.format(v)


def interval(iv, fmt_spec: str | None = None) -> str:
    """``[lo, hi]`` of a 95 % interval in a Markdown line (``NA`` without one)."""
    if not iv or iv[0] is None or iv[1] is None:
        return NA
    return f"[{num(iv[0], fmt_spec)}, {num(iv[1], fmt_spec)}]"


def describe(df: pd.DataFrame, headers: dict | None = None, caption: str | None = None,
             signed=()) -> pd.DataFrame:
    """Record how ``df`` is shown (headers with units, caption, signed columns); returns ``df``."""
    df.attrs[_KEY] = {"headers": dict(headers or {}), "caption": caption, "signed": list(signed)}
    return df


class Table:
    """A formatted table: ``_repr_html_`` for Jupyter and nbconvert, ``str`` for a terminal."""

    def __init__(self, df: pd.DataFrame, headers: dict, caption: str | None, signed, max_cols: int):
        self.data, self.headers, self.caption, self.signed = df, headers, caption, set(signed)
        self.max_cols = max(1, int(max_cols))

    def _display_frame(self) -> pd.DataFrame:
        df = self.data.copy()
        df.attrs = {}
        if isinstance(df.columns, pd.MultiIndex):
            df.columns = [" · ".join(str(c) for c in col) for col in df.columns]
        strs = {c: [fmt(v, signed=c in self.signed) for v in df[c]] for c in df.columns}
        out = pd.DataFrame(strs, index=df.index, columns=df.columns)
        out.index = _format_index(df.index, self.headers)
        out.columns = [self.headers.get(c, auto_header(c)) for c in df.columns]
        return out

    def groups(self) -> list[pd.DataFrame]:
        """The column groups shown (one frame when the table has at most ``max_cols`` columns)."""
        df = self._display_frame()
        n = df.shape[1]
        return [df.iloc[:, i:i + self.max_cols] for i in range(0, max(n, 1), self.max_cols)]

    def stylers(self) -> list:
        groups, out = self.groups(), []
        n = self.data.shape[1]
        for j, g in enumerate(groups):
            cap = self.caption or ""
            if len(groups) > 1:
                part = f"columns {j * self.max_cols + 1}–{j * self.max_cols + g.shape[1]} of {n}"
                cap = f"{cap} ({part})" if j == 0 and cap else part
            s = g.style.set_table_styles(_TABLE_CSS).format(escape="html")
            prose = [c for c in g.columns if g[c].map(len).max() > 24]       # reasons, notes: wrap them
            if prose:
                s = s.set_properties(subset=prose, **{"white-space": "normal", "min-width": "16em",
                                                      "max-width": "32em", "text-align": "left"})
            if cap:
                s = s.set_caption(_escape(cap))
            out.append(s)
        return out

    def to_html(self) -> str:
        return "\n".join(_BOX.format(s.to_html()) for s in self.stylers())

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        parts = [self.caption] if self.caption else []
        parts += [g.to_string() for g in self.groups()]
        return "\n\n".join(parts)

    __repr__ = __str__


def table(df: pd.DataFrame, headers: dict | None = None, caption: str | None = None, signed=None,
          max_cols: int = 8) -> Table:
    """The displayable table of ``df`` (what ``describe`` recorded, overridden by the arguments)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"style.table takes a DataFrame, got {type(df).__name__}")
    rec = df.attrs.get(_KEY) or {}
    h = {**rec.get("headers", {}), **(headers or {})}
    return Table(df, h, caption if caption is not None else rec.get("caption"),
                 rec.get("signed", []) if signed is None else signed, max_cols)


def figure_caption(fig, text: str):
    """Write ``text`` under the figure (wrapped to the figure's width, about 14 characters of
    8.5 pt text per inch; kept by the tight bounding box of ``savefig`` and of the inline display)."""
    w = max(40, int(14 * fig.get_figwidth()))
    fig.text(0.01, -0.005, "\n".join(textwrap.wrap(text, w)), ha="left", va="top", fontsize=8.5, color="#333")
    return fig


_SUFFIX_UNITS = (("_per_s", "/s"), ("_gib", "GiB"), ("_gb", "GB"), ("_mb", "MB"), ("_bytes", "bytes"),
                 ("_pct", "%"), ("_ms", "ms"), ("_s", "s"), ("_tokens", "tokens"))


def auto_header(name) -> str:
    """A raw column name with its unit from the suffix: ``requests_per_s`` -> "requests/s",
    ``kv_cache_gb`` -> "kv cache (GB)", ``error_pct`` -> "error (%)"; other names unchanged."""
    n = str(name)
    for suf, unit in _SUFFIX_UNITS:
        if n.endswith(suf) and len(n) > len(suf):
            base = n[: -len(suf)].replace("_", " ")
            return f"{base}{unit}" if unit == "/s" else f"{base} ({unit})"
    return n


def _format_index(index: pd.Index, headers: dict) -> pd.Index:
    def one(v):
        return fmt(v) if isinstance(v, numbers.Number) else str(v)
    if isinstance(index, pd.MultiIndex):
        tuples = [tuple(one(v) for v in t) for t in index]
        return pd.MultiIndex.from_tuples(tuples, names=[headers.get(n, n if n is None else auto_header(n))
                                                        for n in index.names])
    name = index.name
    return pd.Index([one(v) for v in index], name=headers.get(name, name if name is None else auto_header(name)))


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
