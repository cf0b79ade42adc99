"""On-disk cache of tokenized workloads (one ``.npz`` per key), written atomically.

Key = sha256 over (format version, dataset spec filters, the source files' content hashes or the
hub id/config/split, the tokenizer's identity). Folder: ``$PDLIB_CACHE_DIR`` or
``~/.cache/pdlib/workloads``. A corrupt or unreadable entry is ignored (and rewritten).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from pdlib.workload import Request, Skip, Workload

VERSION = 1
_HASHES: dict[tuple, str] = {}
_KEY_FIELDS = ("dataset", "split", "num_requests", "seed", "max_input_tokens", "max_output_tokens",
               "chat_template", "keep_prompt_only")


def cache_dir() -> Path:
    d = os.environ.get("PDLIB_CACHE_DIR")
    return Path(d).expanduser() if d else Path.home() / ".cache" / "pdlib" / "workloads"


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) in this process."""
    st = path.stat()
    k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[k] = h.hexdigest()
    return _HASHES[k]


def workload_key(spec, origin, tokenizer_identity: str) -> str:
    d = spec.to_dict()
    parts = {"v": VERSION, "spec": {k: d.get(k) for k in _KEY_FIELDS}, "tokenizer": tokenizer_identity,
             "hub": origin.hub, "layout": origin.layout,
             "files": [file_hash(f) for f in origin.files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def path_for(key: str) -> Path:
    return cache_dir() / f"{key[:32]}.npz"


def save(key: str, wl: Workload) -> Path:
    reqs = wl.requests
    has_ids = np.array([r.prompt_ids is not None for r in reqs], dtype=bool)
    lens = np.array([len(r.prompt_ids) if r.prompt_ids is not None else 0 for r in reqs], dtype=np.int64)
    flat = np.fromiter((t for r in reqs if r.prompt_ids is not None for t in r.prompt_ids),
                       dtype=np.int32, count=int(lens.sum()))
    doc = {"key": key, "name": wl.name, "meta": wl.meta,
           "requests": [[r.id, r.prompt, r.source_id] for r in reqs],
           "skipped": [[s.index, s.reason, s.source_id] for s in wl.skipped]}
    arrays = {"ids": flat, "id_lens": lens, "has_ids": has_ids,
              "input_len": np.array([r.input_len for r in reqs], dtype=np.int64),
              "output_len": np.array([r.output_len for r in reqs], dtype=np.int64),
              "truncated": np.array([r.truncated for r in reqs], dtype=bool),
              "doc": np.frombuffer(json.dumps(doc, default=str).encode(), dtype=np.uint8)}
    out = path_for(key)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def load(key: str) -> Workload | None:
    p = path_for(key)
    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            doc = json.loads(z["doc"].tobytes().decode())
            if doc.get("key") != key:
                return None
            ids, id_lens, has_ids = z["ids"], z["id_lens"], z["has_ids"]
            inp, out, trunc = z["input_len"], z["output_len"], z["truncated"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # corrupt entry: rebuild
        return None
    offs = np.concatenate([[0], np.cumsum(id_lens)])
    reqs = []
    for i, (rid, prompt, sid) in enumerate(doc["requests"]):
        pid = ids[offs[i]:offs[i + 1]].tolist() if has_ids[i] else None
        reqs.append(Request(id=rid, input_len=int(inp[i]), output_len=int(out[i]), prompt_ids=pid,
                            prompt=prompt, source_id=sid, truncated=bool(trunc[i])))
    skipped = [Skip(i, r, s) for i, r, s in doc["skipped"]]
    return Workload(doc["name"], reqs, skipped, doc["meta"])
