"""Length-only workloads from public request traces: Azure LLM inference 2023 (code, conv),
BurstGPT, and the ShareGPT length statistics. Token counts are taken as recorded; they were
counted by the trace's own tokenizer, not the model's (recorded in ``meta["lengths"]``)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pdlib.workload import Request, Skip, Workload, first_skips, skip_field

from .errors import BadRecord, DataError
from .fields import parse_count
from .files import read_csv


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


def locate_trace(spec, data_dir) -> Path:
    fmt = TRACES[spec.dataset]
    if spec.path:
        p = Path(spec.path).expanduser()
        if not p.is_file():
            raise DataError("trace file not found" if not p.exists() else "expected a CSV file", file=p)
        return p
    for c in fmt.files:
        if data_dir is not None and (Path(data_dir) / c).is_file():
            return Path(data_dir) / c
    where = f"under {data_dir}" if data_dir else "(no data folder: set PDLIB_DATA_DIR or pass data_dir=)"
    raise DataError(f"trace {spec.dataset!r}: none of {list(fmt.files)} found {where}; or pass path='FILE.csv'")


def load_trace(spec, data_dir) -> Workload:
    fmt = TRACES[spec.dataset]
    path = locate_trace(spec, data_dir)
    header, rows = read_csv(path, (fmt.input, fmt.output) + ((fmt.filter_column,) if spec.split and fmt.filter_column else ()))
    ci, co = header.index(fmt.input), header.index(fmt.output)
    cf = header.index(fmt.filter_column) if spec.split and fmt.filter_column else None
    if spec.split and fmt.filter_column is None:
        raise ValueError(f"{spec.dataset} has no splits (got split={spec.split!r})")
    parsed, skips, outside = [], [], 0
    for i, row in enumerate(rows):
        if not row or all(not c.strip() for c in row):
            skips.append(Skip(i, "row: blank line" if not row else "row: every cell empty"))
            continue
        if cf is not None and (len(row) <= cf or row[cf].strip() != spec.split):
            outside += 1
            continue
        try:
            if len(row) <= max(ci, co):
                raise BadRecord(None, f"{len(row)} columns, header has {len(header)}")
            n_in = parse_count(row[ci], fmt.input)
            n_out = parse_count(row[co], fmt.output)
        except BadRecord as e:
            skips.append(Skip(i, str(e)))
            continue
        parsed.append((i, n_in, n_out))
    if not parsed:
        raise DataError(f"no usable rows in {len(rows)} ({len(skips)} skipped"
                        + (f", {outside} outside split {spec.split!r}" if outside else "") + f"; {first_skips(skips)})",
                        file=path)
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
    meta = {"dataset": spec.dataset, "spec": spec.to_dict(), "source": "local", "files": [str(path)],
            "tokenizer": None, "lengths": f"token counts as recorded in the trace, counted with {fmt.counted_with}; "
                                          f"not the model's tokenizer",
            "records": len(rows), "outside_split": outside, "unused": len(parsed) - used, "num_requests": len(reqs), "skipped": len(skips),
            "truncated": sum(r.truncated for r in reqs),
            "skip_reasons": dict(Counter(skip_field(s.reason) for s in skips))}
    if spec.tokenizer:
        meta["tokenizer_note"] = f"tokenizer {spec.tokenizer!r} not used: a length-only trace has no text"
    return Workload(spec.dataset if not spec.split else f"{spec.dataset}:{spec.split}", reqs, skips, meta)
