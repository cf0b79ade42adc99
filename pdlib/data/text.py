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

from pdlib.workload import Request, Skip, Workload, first_skips, skip_field

from . import cache
from .errors import BadRecord, DataError
from .fields import check_text
from .files import SKIPPED, TOO_DEEP, find_row_files, read_rows
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
    """Every row becomes a record, a counted ``Skip``, or (``parse`` returned None) outside the split."""
    records, skips, outside = [], list(start_skips), 0
    for i, row in enumerate(rows):
        if row is SKIPPED:
            continue
        try:
            rec = parse(row, i, spec)
            if rec is not None:      # text the tokenizer cannot take (lone surrogates) never reaches it
                check_text(rec.prompt, "prompt")
                rec.output is None or check_text(rec.output, "output")
        except BadRecord as e:
            skips.append(Skip(i, str(e), _row_id(row)))
            continue
        except RecursionError:
            skips.append(Skip(i, f"record: {TOO_DEEP}"))
            continue
        if rec is None:
            outside += 1
        else:
            records.append(rec)
    return records, skips, outside


def _row_id(row) -> str | None:
    sid = row.get("id", row.get("_id")) if isinstance(row, dict) else None
    return str(sid)[:200] if isinstance(sid, (str, int, float)) else None


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
        raise DataError(f"no usable records in {len(rows)} ({len(skips)} skipped"
                        + (f", {outside} outside split {spec.split!r}" if outside else "") + f"; {first_skips(skips)})",
                        file=origin.describe())
    order = np.arange(len(records)) if spec.seed is None else np.random.default_rng(spec.seed).permutation(len(records))
    requests, examined, used, prompt_only = [], 0, 0, []
    want = spec.num_requests or len(records)
    while len(requests) < want and examined < len(records):
        n = len(records) if spec.num_requests is None else 2 * (want - len(requests)) + 4
        chunk = [records[j] for j in order[examined:examined + n]]
        examined += len(chunk)
        used += _tokenize_chunk(chunk, tok, spec, requests, skips, prompt_only, want)
    skips.sort(key=lambda s: s.index)
    if not requests:
        raise DataError(f"no request left: all {len(records)} parsed records were skipped while tokenizing or "
                        f"filtering ({first_skips(skips)})", file=origin.describe())
    meta = {
        "dataset": spec.dataset, "spec": spec.to_dict(), "source": "hub" if origin.hub else "local",
        "files": [str(f) for f in origin.files], "hub": origin.hub, "tokenizer": tok.name,
        "tokenizer_identity": tok.identity, "tokenizer_source": tok.source,
        "chat_template": bool(spec.chat_template and tok.has_chat_template),
        "lengths": "input = prompt tokens as the model sees them; output = reference output tokens, same tokenizer",
        "records": len(rows), "parsed": len(records), "examined": examined, "outside_split": outside,
        "unused": len(records) - used,      # parsed, not needed once num_requests were kept
        "num_requests": len(requests), "skipped": len(skips), "truncated": sum(r.truncated for r in requests),
        "skip_reasons": dict(Counter(skip_field(s.reason) for s in skips)),
        "prompt_only_ids": prompt_only,
    }
    if spec.chat_template and not tok.has_chat_template:
        meta["chat_template_note"] = f"asked for a chat template but tokenizer {tok.name} has none; raw prompts used"
    wl = Workload(spec.dataset if not spec.split else f"{spec.dataset}:{spec.split}", requests, skips, meta)
    if key is not None:
        saved = cache.save(key, wl)
        wl.meta["cache"] = {"hit": False, "path": str(saved) if saved else None}
    return wl


def _tokenize(chunk, tok, spec):
    """``(prompt ids, output count or None)`` per record; if the tokenizer rejects the batch, the
    records are retried one by one and a record it rejects gets ``(None, why)``."""
    chat = spec.chat_template and tok.has_chat_template

    def run(recs):
        outs = iter(tok.count([r.output for r in recs if r.output is not None]))
        return [(ids, None if r.output is None else next(outs))
                for ids, r in zip(tok.encode_prompts([r.prompt for r in recs], chat_template=chat), recs)]

    try:
        return run(chunk)
    except Exception:  # noqa: BLE001 - third-party (Rust) tokenizer: find the record(s) it fails on
        out = []
        for r in chunk:
            try:
                out += run([r])
            except Exception as e:  # noqa: BLE001 - counted as this record's skip
                out.append((None, f"{type(e).__name__}: {str(e)[:80]}"))
        return out


def _tokenize_chunk(chunk, tok, spec, requests, skips, prompt_only, want) -> int:
    """Turn the chunk's records into requests or skips until ``want`` requests; how many it used."""
    for k, (rec, (ids, n_out)) in enumerate(zip(chunk, _tokenize(chunk, tok, spec))):
        if len(requests) >= want:
            return k
        if ids is None:
            skips.append(Skip(rec.index, f"prompt: the tokenizer failed ({n_out})", rec.source_id))
            continue
        n_in = len(ids)
        if spec.max_input_tokens is not None and n_in > spec.max_input_tokens:
            skips.append(Skip(rec.index, f"input_len: above max_input_tokens ({n_in} > {spec.max_input_tokens})",
                              rec.source_id))
            continue
        if n_in == 0:
            skips.append(Skip(rec.index, "prompt: 0 tokens", rec.source_id))
            continue
        if rec.output is None:
            n_out, truncated = spec.max_output_tokens, False
            prompt_only.append(str(rec.index))
        else:
            if n_out == 0:
                skips.append(Skip(rec.index, "output: 0 tokens", rec.source_id))
                continue
            truncated = spec.max_output_tokens is not None and n_out > spec.max_output_tokens
            n_out = min(n_out, spec.max_output_tokens) if truncated else n_out
        requests.append(Request(id=str(rec.index), input_len=n_in, output_len=n_out, prompt_ids=ids,
                                prompt=rec.prompt, source_id=rec.source_id, truncated=truncated))
    return len(chunk)
