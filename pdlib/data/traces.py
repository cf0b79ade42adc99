"""Length-only workloads from request traces: token counts per request, taken as recorded.

Named traces (files under the data folder): Azure LLM inference 2023 (``azure-code``,
``azure-conv``), BurstGPT (``burstgpt``), the ShareGPT length statistics (``sharegpt-stats``).
``trace`` is any other length trace: ``path=`` a CSV, JSON Lines (``.jsonl``/``.ndjson``; a
``{``-first file of any other suffix is read as JSON Lines too) or JSON-list file, with the
input/output columns named by ``input_col``/``output_col`` or detected from the common names
(``TRACE_COLUMNS``: Mooncake, Azure, BurstGPT, etalon/vidur/Splitwise processed traces,
OpenAI usage logs, pdlib's own lengths files). The workload is named after its file.

The counts were made by the trace's own tokenizer, not the model's: ``meta["tokenizer"]`` is
None, ``meta["lengths"]`` says where the counts come from, and a tokenizer passed for a trace
is reported as not used (``meta["tokenizer_note"]``), never silently dropped.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdlib.workload import Request, Skip, Workload, first_skips, skip_field

from .errors import BadRecord, DataError
from .fields import parse_count
from .files import SKIPPED, read_csv, read_json_rows, read_jsonl_rows, read_rows


@dataclass(frozen=True)
class TraceFormat:
    files: tuple[str, ...]      # candidates under the data folder
    input: str                  # column with the prompt token count
    output: str                 # column with the generated token count
    counted_with: str
    filter_column: str | None = None   # split selects rows by this column


TRACES = {
    "azure-code": TraceFormat(("traces/AzureLLMInferenceTrace_code.csv",), "ContextTokens", "GeneratedTokens",
                              "the Azure OpenAI service's tokenizer (GPT-4 family)"),
    "azure-conv": TraceFormat(("traces/AzureLLMInferenceTrace_conv.csv",), "ContextTokens", "GeneratedTokens",
                              "the Azure OpenAI service's tokenizer (GPT-4 family)"),
    "burstgpt": TraceFormat(("traces/BurstGPT_1.csv", "traces/burstgpt_slice.csv"), "Request tokens", "Response tokens",
                            "OpenAI's ChatGPT / GPT-4 tokenizer", filter_column="Model"),
    "sharegpt-stats": TraceFormat(("traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",),
                                  "num_prefill_tokens", "num_decode_tokens", "the Llama-2 tokenizer"),
}

#: Column names the generic ``trace`` loader looks for, in this order: (input, output, whose names).
TRACE_COLUMNS = (
    ("input_length", "output_length", "Mooncake"),
    ("ContextTokens", "GeneratedTokens", "Azure LLM inference trace"),
    ("Request tokens", "Response tokens", "BurstGPT"),
    ("num_prefill_tokens", "num_decode_tokens", "etalon / vidur / Splitwise processed traces (ShareGPT stats)"),
    ("input_tokens", "output_tokens", "pdlib data lengths"),
    ("prompt_tokens", "completion_tokens", "OpenAI usage logs"),
    ("prompt_len", "output_len", "vLLM benchmark results"),
    ("input_len", "output_len", "input_len/output_len"),
    ("num_input_tokens", "num_output_tokens", "num_input_tokens/num_output_tokens"),
)
GENERIC = "trace"
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Table:
    """A trace file read whole: its format, the columns found, and one entry per record (a
    list of CSV cells, a dict, or ``SKIPPED`` for a JSON Lines line already counted in ``skips``)."""
    path: Path
    format: str
    columns: list[str]
    rows: list
    skips: list[Skip]

    def cell(self, row, col: str):
        """The value of ``col`` in ``row``; a missing one -> BadRecord naming the column."""
        if isinstance(row, dict):
            if col not in row or row[col] is None:
                raise BadRecord(col, "missing")
            return row[col]
        if self.format != "CSV":
            raise BadRecord(None, f"record is {type(row).__name__}, expected an object")
        j = self.columns.index(col)
        if len(row) <= j:
            raise BadRecord(None, f"{len(row)} columns, header has {len(self.columns)}")
        return row[j]


def _first_char(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def read_table(path) -> Table:
    """A CSV file, or JSON Lines / a JSON list of objects (by suffix, else by a ``{`` or ``[`` first)."""
    path = Path(path)
    first = _first_char(path)
    is_json = path.suffix.lower() == ".json" or (first == b"[" and path.suffix.lower() not in JSONL_SUFFIXES)
    if is_json or path.suffix.lower() in JSONL_SUFFIXES or first == b"{":
        if is_json:
            rows, skips = read_rows(path) if path.suffix.lower() == ".json" else (read_json_rows(path), [])
            fmt = "JSON Lines" if skips or (rows and rows[0] is SKIPPED) else "JSON"
        else:
            rows, skips = read_jsonl_rows(path)
            fmt = "JSON Lines"
        cols: dict[str, None] = {}
        for r in rows:
            if isinstance(r, dict):
                cols.update(dict.fromkeys(map(str, r)))
        if not cols:
            raise DataError(f"read as {fmt}: no record is a JSON object with named fields "
                            "(expected one object per request, e.g. {\"input_length\": 512, \"output_length\": 64})",
                            file=path)
        return Table(path, fmt, list(cols), rows, skips)
    header, rows = read_csv(path, ())
    return Table(path, "CSV", header, rows, [])


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip()).casefold()


def _find(columns: list[str], name: str) -> str | None:
    """``name`` among ``columns``: exactly, else ignoring case, spaces, '-' and '_'."""
    if name in columns:
        return name
    return next((c for c in columns if _norm(c) == _norm(name)), None)


def resolve_columns(table: Table, input_col, output_col, named: TraceFormat | None,
                    dataset: str) -> tuple[str, str, str | None]:
    """(input column, output column, whose names they are: None when both were given) of ``table``; a DataError saying
    which columns were found and which names were looked for when one cannot be found."""
    found = table.columns
    shown = ", ".join(repr(c) for c in found[:20]) + (f" (+{len(found) - 20} more)" if len(found) > 20 else "")
    picked, source, missing = [], None, []
    for given, side in ((input_col, "input"), (output_col, "output")):
        if given is not None:
            c = _find(found, given)
            if c is None:
                raise DataError(f"{table.format}: no column {given!r} (--{side}-col); columns found: {shown}",
                                file=table.path)
            picked.append(c)
            continue
        if named is not None:
            want = named.input if side == "input" else named.output
            c = _find(found, want)
            if c is None:
                raise DataError(f"{table.format}: missing column {want!r} that {dataset} traces have; columns found: "
                                f"{shown}. For another trace use dataset 'trace' (detects "
                                f"{', '.join(i for i, _, _ in TRACE_COLUMNS[:4])}, ...) or --input-col/--output-col",
                                file=table.path, record=0)
            picked.append(c)
            source = source or dataset
            continue
        names = [pair[0 if side == "input" else 1] for pair in TRACE_COLUMNS]
        hit = next(((c, pair[2]) for n, pair in zip(names, TRACE_COLUMNS) if (c := _find(found, n))), None)
        if hit is None:
            missing.append(f"no {side}-length column (looked for {', '.join(repr(n) for n in dict.fromkeys(names))}; "
                           f"name it with --{side}-col)")
            picked.append(None)
            continue
        picked.append(hit[0])
        source = source or hit[1]
    if missing:
        raise DataError(f"{table.format}: {'; '.join(missing)}; columns found: {shown}", file=table.path)
    if picked[0] == picked[1]:
        raise DataError(f"{table.format}: input and output would both be column {picked[0]!r}; "
                        "give --input-col and --output-col", file=table.path)
    return picked[0], picked[1], source


def locate_trace(spec, data_dir) -> Path:
    if spec.path:
        p = Path(spec.path).expanduser()
        if not p.is_file():
            raise DataError("trace file not found" if not p.exists() else "expected a file (CSV or JSON Lines)",
                            file=p)
        return p
    if spec.dataset == GENERIC:
        raise DataError("dataset 'trace' needs path='FILE' (a CSV or JSON Lines file of token counts, "
                        "--path on the command line)")
    fmt = TRACES[spec.dataset]
    for c in fmt.files:
        if data_dir is not None and (Path(data_dir) / c).is_file():
            return Path(data_dir) / c
    where = f"under {data_dir}" if data_dir else "(no data folder: set PDLIB_DATA_DIR or pass data_dir=)"
    raise DataError(f"trace {spec.dataset!r}: none of {list(fmt.files)} found {where}; or pass path='FILE.csv'")


def trace_name(path: Path) -> str:
    """A generic trace's workload name: its file name without the suffix."""
    return path.name.removesuffix(".gz").rsplit(".", 1)[0] or path.name


def load_trace(spec, data_dir) -> Workload:
    named = TRACES.get(spec.dataset)
    path = locate_trace(spec, data_dir)
    filter_col = named.filter_column if named is not None else None
    if spec.split and filter_col is None:
        raise ValueError(f"{spec.dataset} has no splits (got split={spec.split!r})")
    table = read_table(path)
    cin, cout, names = resolve_columns(table, spec.input_col, spec.output_col, named, spec.dataset)
    cf = (_find(table.columns, filter_col) if spec.split else None)
    if spec.split and cf is None:
        raise DataError(f"split={spec.split!r} selects by column {filter_col!r}, which this file lacks; "
                        f"columns found: {table.columns}", file=path, record=0)
    parsed, skips, outside = [], list(table.skips), 0
    for i, row in enumerate(table.rows):
        if row is SKIPPED:
            continue
        if table.format == "CSV" and (not row or all(not c.strip() for c in row)):
            skips.append(Skip(i, "row: blank line" if not row else "row: every cell empty"))
            continue
        try:
            if cf is not None:
                v = table.cell(row, cf)
                if str(v).strip() != spec.split:
                    outside += 1
                    continue
            n_in = parse_count(table.cell(row, cin), cin)
            n_out = parse_count(table.cell(row, cout), cout)
        except BadRecord as e:
            skips.append(Skip(i, str(e)))
            continue
        parsed.append((i, n_in, n_out))
    n_rec = len(table.rows)
    if not parsed:
        raise DataError(f"{table.format}: no usable rows in {n_rec} ({len(skips)} skipped"
                        + (f", {outside} outside split {spec.split!r}" if outside else "")
                        + f"; {first_skips(sorted(skips, key=lambda s: s.index))})", file=path)
    order = range(len(parsed)) if spec.seed is None else np.random.default_rng(spec.seed).permutation(len(parsed))
    want = spec.num_requests or len(parsed)
    reqs, used = [], 0
    for j in order:
        if len(reqs) >= want:
            break
        used += 1
        i, n_in, n_out = parsed[j]
        if spec.max_input_tokens is not None and n_in > spec.max_input_tokens:
            skips.append(Skip(i, f"input_len: above max_input_tokens ({n_in} > {spec.max_input_tokens})"))
            continue
        truncated = spec.max_output_tokens is not None and n_out > spec.max_output_tokens
        reqs.append(Request(id=str(i), input_len=n_in, output_len=min(n_out, spec.max_output_tokens) if truncated else n_out,
                            source_id=str(i), truncated=truncated))
    skips.sort(key=lambda s: s.index)
    if not reqs:
        raise DataError(f"no request left after the filters ({first_skips(skips)})", file=path)
    counted = (f"counted with {named.counted_with}" if named is not None
               else (f"named as in {names}; " if names else "") + "counted with the trace's own tokenizer (unknown to pdlib)")
    meta = {"dataset": spec.dataset, "spec": spec.to_dict(), "source": "local", "files": [str(path)],
            "format": table.format, "columns": {"input": cin, "output": cout, "names_of": names},
            "tokenizer": None,
            "lengths": f"counts from the trace ({path.name}, columns {cin!r}/{cout!r}), {counted}; "
                       f"not the model's tokenizer",
            "records": n_rec, "outside_split": outside, "unused": len(parsed) - used, "num_requests": len(reqs),
            "skipped": len(skips), "truncated": sum(r.truncated for r in reqs),
            "skip_reasons": dict(Counter(skip_field(s.reason) for s in skips))}
    if spec.tokenizer:
        tok = spec.tokenizer if isinstance(spec.tokenizer, str) else type(spec.tokenizer).__name__
        meta["tokenizer_note"] = (f"tokenizer {tok!r} not used (ignored): a length-only trace has no text; "
                                  "its counts come from the trace")
    name = trace_name(path) if named is None else spec.dataset
    return Workload(name if not spec.split else f"{name}:{spec.split}", reqs, skips, meta)
