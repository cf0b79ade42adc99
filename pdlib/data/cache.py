"""On-disk cache of tokenized workloads (one ``.npz`` per key), written atomically.

Key = sha256 over (format version, dataset spec filters, the source files' content hashes or the
hub id/config/split, the tokenizer's identity). Folder: ``pdlib.paths.cache_dir("workloads")``
(``$PDLIB_CACHE_DIR/workloads``, default ``~/.cache/pdlib/workloads``). The cache never stops a
load: a corrupt, inconsistent or unreadable entry is ignored with a warning (and rewritten), and
a cache folder that cannot be written (a file in its place, no permission) is bypassed with a
warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from pdlib import paths
from pdlib.workload import MAX_TOKENS, Request, Skip, Workload

VERSION = 1
_HASHES: dict[tuple, str] = {}
_KEY_FIELDS = ("dataset", "split", "num_requests", "seed", "max_input_tokens", "max_output_tokens",
               "chat_template", "keep_prompt_only")


def cache_dir() -> Path:
    return paths.cache_dir("workloads")


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


class CacheWarning(UserWarning):
    """A cache entry was ignored or not written; the workload was built from the source instead."""


def _warn(msg: str) -> None:
    warnings.warn(msg, CacheWarning, stacklevel=3)


def save(key: str, wl: Workload) -> Path | None:
    """Write the entry atomically; its path, or None (with a warning) when the cache cannot be written."""
    reqs = wl.requests
    has_ids = np.array([r.prompt_ids is not None for r in reqs], dtype=bool)
    lens = np.array([len(r.prompt_ids) if r.prompt_ids is not None else 0 for r in reqs], dtype=np.int64)
    flat = np.fromiter((t for r in reqs if r.prompt_ids is not None for t in r.prompt_ids),
                       dtype=np.int32, count=int(lens.sum()))
    doc = {"key": key, "name": wl.name, "meta": wl.meta,
           "requests": [[r.id, r.prompt, r.source_id] for r in reqs],
           "skipped": [[s.index, s.reason, s.source_id] for s in wl.skipped]}
    arrays = {"ids": flat, "id_lens": lens, "has_ids": has_ids,
              "input_len": wl.input_lens, "output_len": wl.output_lens,
              "truncated": np.array([r.truncated for r in reqs], dtype=bool),
              "doc": np.frombuffer(json.dumps(doc, default=str).encode(), dtype=np.uint8)}
    out = path_for(key)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        _warn(f"workload cache bypassed: cannot write {out} ({type(e).__name__}: {e.strerror or e}); "
              f"set PDLIB_CACHE_DIR to a writable folder or pass cache=False")
        return None
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)
    return out


def load(key: str) -> Workload | None:
    """The cached workload, or None when there is no usable entry (a broken one is warned about)."""
    p = path_for(key)
    try:
        if not p.exists():
            return None
        wl = _read(p, key)
    except Exception as e:  # noqa: BLE001 - whatever is wrong with an entry, the source rebuilds it
        _warn(f"workload cache entry {p} ignored and rebuilt ({type(e).__name__}: {str(e)[:200]})")
        return None
    return wl


def _read(p: Path, key: str) -> Workload | None:
    with np.load(p, allow_pickle=False) as z:
        doc = json.loads(z["doc"].tobytes().decode())
        if doc.get("key") != key:
            return None       # a hash-prefix collision: not this entry
        ids, id_lens, has_ids = z["ids"], z["id_lens"], z["has_ids"]
        inp, out, trunc = z["input_len"], z["output_len"], z["truncated"]
    rows, skipped = doc["requests"], doc["skipped"]
    n = len(rows)
    if any(a.ndim != 1 or len(a) != n for a in (id_lens, has_ids, inp, out, trunc)) or ids.ndim != 1:
        raise ValueError(f"array lengths disagree with {n} requests")
    if int(id_lens.sum()) != len(ids) or (id_lens < 0).any():
        raise ValueError("token ids do not add up")
    if n and (inp.min() < 0 or out.min() < 0 or max(inp.max(), out.max()) > MAX_TOKENS):
        raise ValueError("lengths out of range")
    offs = np.concatenate([[0], np.cumsum(id_lens)])
    reqs = []
    for i, (rid, prompt, sid) in enumerate(rows):
        pid = ids[offs[i]:offs[i + 1]].tolist() if has_ids[i] else None
        if pid is not None and len(pid) != int(inp[i]):
            raise ValueError(f"request {i}: {len(pid)} ids, input_len {int(inp[i])}")
        reqs.append(Request(id=str(rid), input_len=int(inp[i]), output_len=int(out[i]), prompt_ids=pid,
                            prompt=prompt, source_id=sid, truncated=bool(trunc[i])))
    skipped = [Skip(int(i), str(r), s) for i, r, s in skipped]
    if not isinstance(doc["meta"], dict):
        raise TypeError("meta is not an object")
    return Workload(str(doc["name"]), reqs, skipped, doc["meta"])
