"""Reading local files strictly: UTF-8, JSON (a list of objects), JSON Lines, parquet, CSV.

Whole-file problems (unreadable, empty, not UTF-8, malformed or too deeply nested JSON, wrong
top-level type) raise ``DataError`` naming the file; a single bad (or blank) JSON Lines line
becomes a ``Skip``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pdlib.workload import Skip

from .errors import DataError

ROW_SUFFIXES = (".json", ".jsonl", ".parquet")


class _Skipped:
    """Placeholder for a record the reader already skipped (keeps record indices = positions)."""
    def __repr__(self):
        return "SKIPPED"


SKIPPED = _Skipped()
TOO_DEEP = "nested too deeply to parse (Python's recursion limit)"


def _loads(text):
    """``json.loads``; a nesting deeper than the recursion limit is a ``JSONDecodeError`` too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, "", 0) from None


def read_text(path) -> str:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    except IsADirectoryError:
        raise DataError("is a folder, expected a file", file=path) from None
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror})", file=path) from None
    if not raw.strip():
        raise DataError("empty file", file=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (byte {e.start}, line {line})", file=path) from None


def read_json_rows(path) -> list:
    """A JSON file whose top level is a list of records."""
    text = read_text(path)
    try:
        data = _loads(text)
    except json.JSONDecodeError as e:
        if e.msg == TOO_DEEP:
            raise DataError(f"malformed JSON: {TOO_DEEP}", file=path) from None
        raise DataError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", file=path) from None
    if not isinstance(data, list):
        raise DataError(f"top level is a JSON {type(data).__name__}, expected a list of records", file=path)
    if not data:
        raise DataError("the JSON list is empty", file=path)
    return data


def read_jsonl_rows(path) -> tuple[list, list[Skip]]:
    """JSON Lines; a line that is blank or not valid JSON is a counted skip (``rows`` keeps ``SKIPPED``
    in its place, so record indices are the line numbers - 1)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read ({e.strerror or e})", file=path) from None
    return parse_jsonl(raw, path)


def parse_jsonl(raw: bytes, path) -> tuple[list, list[Skip]]:
    """JSON Lines from bytes (``path`` only names the source in errors)."""
    rows, skips = [], []
    for i, line in enumerate(raw.splitlines()):
        rows.append(SKIPPED)
        if not line.strip():
            skips.append(Skip(i, "line: blank"))
            continue
        try:
            rows[i] = _loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            skips.append(Skip(i, f"line: not UTF-8 (byte {e.start})"))
        except json.JSONDecodeError as e:
            skips.append(Skip(i, f"line: malformed JSON ({e.msg})"))
    if all(r is SKIPPED for r in rows):
        why = f"; first problem: line {skips[0].index + 1}: {skips[0].reason}" if skips else ""
        raise DataError(f"no JSON records{why}", file=path)
    return rows, skips


def read_parquet_rows(path) -> list:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow ships with datasets
        raise DataError("reading parquet needs pyarrow (pip install pyarrow)", file=path) from e
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError, NotImplementedError,
            RecursionError) as e:
        raise DataError(f"not a readable parquet file ({type(e).__name__}: {e})", file=path) from None
    if not rows:
        raise DataError("parquet file has no rows", file=path)
    return rows


def read_rows(path) -> tuple[list, list[Skip]]:
    """Records from a .json / .jsonl / .parquet file, by suffix (JSON Lines detected by content too)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet_rows(path), []
    if suffix == ".jsonl":
        return read_jsonl_rows(path)
    if suffix == ".json":
        text = read_text(path)
        if text.lstrip().startswith("{") and "\n{" in text.strip():
            try:
                _loads(text)
            except json.JSONDecodeError:
                return read_jsonl_rows(path)   # JSON Lines saved as .json
        return read_json_rows(path), []
    raise DataError(f"unsupported file type {suffix or '(none)'}; expected one of {ROW_SUFFIXES}", file=path)


def find_row_files(folder: Path, stem: str | None = None) -> list[Path]:
    """Row files in ``folder``: ``<stem>.json|.jsonl|.parquet`` (and ``<stem>-*.parquet`` shards)
    when a stem is given, else every such file, sorted."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ROW_SUFFIXES)
    if stem is not None:
        files = [p for p in files if p.stem == stem or p.stem.startswith(stem + "-")]
    return files


def read_csv(path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; missing required columns -> DataError naming them."""
    text = read_text(path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader)
        rows = list(reader)
    except csv.Error as e:
        raise DataError(f"malformed CSV ({e})", file=path) from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"missing column(s) {missing}; header is {header}", file=path, record=0)
    if not rows:
        raise DataError("CSV has a header but no rows", file=path)
    return header, rows
