"""Text datasets -> token-level workloads.

A source yields rows (hub rows, or local rows in the same format); its ``parse(row, index, spec)``
turns one row into a ``TextRecord`` (or raises ``BadRecord`` -> counted ``Skip``; returns
``None`` for rows outside the requested split). Records are ordered (file order, or a seeded
permutation), tokenized in batches with the model's tokenizer until ``num_requests`` pass the
filters, and cached on disk.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pdlib.workload import Request, Skip, Workload

from . import cache
from .errors import BadRecord, DataError
from .files import SKIPPED, find_row_files, read_rows
from .hub import download_hub_file, load_hub_rows
from .spec import DATASETS, DatasetSpec
from .tokenizer import load_tokenizer, tokenizer_identity


@dataclass(slots=True)
class TextRecord:
    index: int               # row index in the source
    source_id: str
    prompt: str
    output: str | None       # reference output; None = prompt only (no reply in the source)


@dataclass
class Origin:
    """Where the rows come from: local files, or the hub (``hub`` = dict of id/config/split/file)."""
    files: list[Path] = field(default_factory=list)
    hub: dict | None = None
    layout: str = "rows"     # "rows" (json/jsonl/parquet in hub format) or a source-specific layout

    def describe(self) -> str:
        if self.hub:
            return "hub:" + "/".join(str(v) for v in self.hub.values() if v)
        return ", ".join(map(str, self.files[:3])) + (f" (+{len(self.files) - 3} more)" if len(self.files) > 3 else "")


def locate_rows(spec: DatasetSpec, data_dir: Path | None, candidates: list[str], *, stem=None,
                hub: dict | None = None) -> Origin:
    """Local row files from ``spec.path`` or the first existing candidate under ``data_dir``;
    otherwise the hub origin (``hub``), or a DataError when the dataset has no hub form."""
    info = DATASETS[spec.dataset]

    def from_path(p: Path) -> Origin | None:
        if p.is_file():
            return Origin([p])
        if p.is_dir():
            files = find_row_files(p, stem)
            if files:
                return Origin(files)
        return None

    if spec.path:
        p = Path(spec.path).expanduser()
        if not p.exists():
            raise DataError("path not found", file=p)
        o = from_path(p)
        if o is None:
            want = f"{stem}.json|.jsonl|.parquet" if stem else "*.json|*.jsonl|*.parquet"
            raise DataError(f"no {want} files in this folder (local form of {spec.dataset}: {info.local})", file=p)
        return o
    if data_dir is not None:
        for c in candidates:
            o = from_path(Path(data_dir) / c)
            if o is not None:
                return o
    if hub is None:
        where = f"under {data_dir}" if data_dir else "(no data folder: set PDLIB_DATA_DIR)"
        raise DataError(f"dataset {spec.dataset!r}: no local copy {where}; expected {info.local}, "
                        f"or pass path='FILE'")
    return Origin(hub=hub)


def read_origin(spec: DatasetSpec, origin: Origin) -> tuple[list, list[Skip]]:
    info = DATASETS[spec.dataset]
    if origin.hub is not None:
        h = origin.hub
        if h.get("file"):
            return read_rows(Path(download_hub_file(spec.dataset, h["id"], h["file"], info.local)))
        # a datasets.Dataset: indexable, len() and iteration yield dict rows without a full copy
        return load_hub_rows(spec.dataset, h["id"], h.get("config"), h["split"], info.local), []
    rows, skips = [], []
    for f in origin.files:
        r, s = read_rows(f)
        base = len(rows)
        skips += [Skip(base + k.index, f"{f.name}: {k.reason}", k.source_id) for k in s]
        rows += r
    return rows, skips


def parse_rows(spec, parse, rows, start_skips) -> tuple[list[TextRecord], list[Skip], int]:
    records, skips, outside = [], list(start_skips), 0
    for i, row in enumerate(rows):
        if row is SKIPPED:
            continue
        try:
            rec = parse(row, i, spec)
        except BadRecord as e:
            sid = row.get("id", row.get("_id")) if isinstance(row, dict) else None
            skips.append(Skip(i, str(e), None if sid is None else str(sid)))
            continue
        if rec is None:
            outside += 1
        else:
            records.append(rec)
    return records, skips, outside


def load_text(spec: DatasetSpec, source, data_dir: Path | None) -> Workload:
    origin: Origin = source.locate(spec, data_dir)
    if spec.keep_prompt_only and spec.max_output_tokens is None:
        raise ValueError("keep_prompt_only needs max_output_tokens: the generation budget of requests "
                         "that have no reference reply")
    key = None
    if spec.cache:
        key = cache.workload_key(spec, origin, tokenizer_identity(spec.tokenizer, data_dir))
        hit = cache.load(key)
        if hit is not None:
            hit.meta["spec"] = spec.to_dict()
            hit.meta["cache"] = {"hit": True, "path": str(cache.path_for(key))}
            return hit
    tok = load_tokenizer(spec.tokenizer, data_dir)
    read = getattr(source, "read", None)
    rows, skips0 = read(spec, origin) if read else read_origin(spec, origin)
    records, skips, outside = parse_rows(spec, source.parse, rows, skips0)
    if not records:
        first = "; ".join(f"record {s.index}: {s.reason}" for s in skips[:3])
        raise DataError(f"no usable records in {len(rows)} ({len(skips)} skipped"
                        + (f", {outside} outside split {spec.split!r}" if outside else "") + (f"; {first}" if first else "") + ")",
                        file=origin.describe())
    order = np.arange(len(records)) if spec.seed is None else np.random.default_rng(spec.seed).permutation(len(records))
    requests, examined, prompt_only = [], 0, []
    want = spec.num_requests or len(records)
    while len(requests) < want and examined < len(records):
        n = len(records) if spec.num_requests is None else 2 * (want - len(requests)) + 4
        chunk = [records[j] for j in order[examined:examined + n]]
        examined += len(chunk)
        _tokenize_chunk(chunk, tok, spec, requests, skips, prompt_only, want)
    skips.sort(key=lambda s: s.index)
    meta = {
        "dataset": spec.dataset, "spec": spec.to_dict(), "source": "hub" if origin.hub else "local",
        "files": [str(f) for f in origin.files], "hub": origin.hub, "tokenizer": tok.name,
        "tokenizer_identity": tok.identity, "tokenizer_source": tok.source,
        "chat_template": bool(spec.chat_template and tok.has_chat_template),
        "lengths": "input = prompt tokens as the model sees them; output = reference output tokens, same tokenizer",
        "records": len(rows), "parsed": len(records), "examined": examined, "outside_split": outside,
        "num_requests": len(requests), "skipped": len(skips), "truncated": sum(r.truncated for r in requests),
        "skip_reasons": dict(Counter(_reason_kind(s.reason) for s in skips)),
        "prompt_only_ids": prompt_only,
    }
    if spec.chat_template and not tok.has_chat_template:
        meta["chat_template_note"] = f"asked for a chat template but tokenizer {tok.name} has none; raw prompts used"
    wl = Workload(spec.dataset if not spec.split else f"{spec.dataset}:{spec.split}", requests, skips, meta)
    if key is not None:
        cache.save(key, wl)
        wl.meta["cache"] = {"hit": False, "path": str(cache.path_for(key))}
    return wl


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0] if ":" in reason else reason


def _tokenize_chunk(chunk, tok, spec, requests, skips, prompt_only, want):
    ids = tok.encode_prompts([r.prompt for r in chunk], chat_template=spec.chat_template and tok.has_chat_template)
    with_out = [k for k, r in enumerate(chunk) if r.output is not None]
    counts = dict(zip(with_out, tok.count([chunk[k].output for k in with_out])))
    for k, rec in enumerate(chunk):
        if len(requests) >= want:
            return
        n_in = len(ids[k])
        if spec.max_input_tokens is not None and n_in > spec.max_input_tokens:
            skips.append(Skip(rec.index, f"input_len: {n_in} > max_input_tokens {spec.max_input_tokens}", rec.source_id))
            continue
        if rec.output is None:
            n_out, truncated = spec.max_output_tokens, False
            prompt_only.append(str(rec.index))
        else:
            n_out = counts[k]
            if n_out == 0:
                skips.append(Skip(rec.index, "output: 0 tokens", rec.source_id))
                continue
            truncated = spec.max_output_tokens is not None and n_out > spec.max_output_tokens
            n_out = min(n_out, spec.max_output_tokens) if truncated else n_out
        requests.append(Request(id=str(rec.index), input_len=n_in, output_len=n_out, prompt_ids=ids[k],
                                prompt=rec.prompt, source_id=rec.source_id, truncated=truncated))
