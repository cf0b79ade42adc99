"""``load_workload``: one entry point from a dataset spec to a ``Workload``."""
from __future__ import annotations

from pdlib.workload import Workload

from .spec import DATASETS, DatasetSpec, resolve_data_dir


def load_workload(spec) -> Workload:
    """Build the workload described by ``spec`` (a dict or ``DatasetSpec``; see ``DatasetSpec``).

    Text datasets are tokenized with the model's tokenizer (cached on disk); traces give token
    counts directly; ``synthetic`` draws geometric outputs. ``Workload.meta`` records the spec,
    the resolved files (or hub id), the tokenizer, and counts of records, skips and truncations."""
    spec = DatasetSpec.from_any(spec)
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
