"""``load_workload``: one entry point from a dataset spec to a ``Workload``."""
from __future__ import annotations

from pdlib.workload import Workload

from .errors import DataError
from .spec import DATASETS, DatasetSpec, resolve_data_dir


def load_workload(spec) -> Workload:
    """Build the workload described by ``spec`` (a dict or ``DatasetSpec``; see ``DatasetSpec``).

    Text datasets are tokenized with the model's tokenizer (cached on disk); traces give token
    counts directly; ``synthetic`` draws geometric outputs. ``Workload.meta`` records the spec,
    the resolved files (or hub id), the tokenizer, and counts of records, skips and truncations.
    Bad input raises ``ValueError`` (a bad spec field) or ``DataError`` (a ``ValueError`` naming the
    file, record and field); an operating-system error on a path (too long, no permission) is a
    ``DataError`` naming that path."""
    spec = DatasetSpec.from_any(spec)
    try:
        return _load(spec)
    except OSError as e:
        raise DataError(f"cannot access ({e.strerror or type(e).__name__})",
                        file=e.filename or spec.path or spec.data_dir) from None


def _load(spec: DatasetSpec) -> Workload:
    kind = DATASETS[spec.dataset].kind
    if kind == "synthetic":
        from .synthetic import load_synthetic
        return load_synthetic(spec)
    data_dir = resolve_data_dir(spec.data_dir)
    if kind == "trace":
        from .traces import load_trace
        wl = load_trace(spec, data_dir)
    else:
        from .sources import get_source
        from .text import load_text
        wl = load_text(spec, get_source(spec.dataset), data_dir)
    wl.meta["data_dir"] = str(data_dir) if data_dir else None
    return wl
