"""Per-layer memory view: torch.profiler with ``profile_memory=True`` over one generate call.

Every submodule's forward is wrapped in a ``record_function("module::<name>")`` range (via
forward hooks). The profiler attributes each allocator event (signed bytes) to the
innermost enclosing op; we attribute it also to the innermost enclosing *module* range, so
a layer's "self" memory is what its own ops allocated net of frees, outside its child
modules (torch's convention for "Self CPU Mem"). Rows: one per module (kind ``module``)
and one per aten op (kind ``op``, torch's own key_averages numbers). The CSV is sorted by
self device memory on CUDA, by self CPU memory on CPU, largest first.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from pdlib.records import atomic_write_text

COLUMNS = ("name", "kind", "calls", "self_device_memory_bytes", "device_memory_bytes",
           "self_cpu_memory_bytes", "cpu_memory_bytes", "self_allocated_bytes")


def _wrap_modules(model, torch):
    hooks, stack = [], []

    def pre(name):
        def f(mod, args):
            rf = torch.profiler.record_function(f"module::{name}")
            rf.__enter__()
            stack.append(rf)
        return f

    def post(mod, args, out):
        stack.pop().__exit__(None, None, None)

    for name, mod in model.named_modules():
        if name:
            hooks.append(mod.register_forward_pre_hook(pre(name)))
            hooks.append(mod.register_forward_hook(post))
    return hooks


def _attribute(events):
    """Sum memory events into the innermost enclosing module range (per device kind)."""
    ranges = sorted(((e.start_ns(), e.start_ns() + e.duration_ns(), e.name()) for e in events
                     if e.name().startswith("module::")), key=lambda r: (r[0], -r[1]))
    mem = sorted((e.start_ns(), e.nbytes(), "cpu" if str(e.device_type()).endswith("CPU") else "device")
                 for e in events if e.name() == "[memory]")
    acc, calls = {}, {}
    for _, _, n in ranges:
        calls[n] = calls.get(n, 0) + 1
    stack, i = [], 0
    for t, nb, kind in mem:
        while i < len(ranges) and ranges[i][0] <= t:
            while stack and stack[-1][1] < ranges[i][0]:
                stack.pop()
            stack.append(ranges[i])
            i += 1
        while stack and stack[-1][1] < t:
            stack.pop()
        if not stack:
            continue
        a = acc.setdefault(stack[-1][2], {"cpu": 0, "device": 0, "alloc": 0})
        a[kind] += nb
        a["alloc"] += max(nb, 0)
    return acc, calls


def profile_layers(model, run, path, device="cpu") -> dict:
    """Run ``run()`` (one generate call) under torch.profiler with memory profiling and
    write the per-layer/per-op table to ``path`` (CSV). Returns a summary for the JSON."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device != "cpu" else [])
    hooks = _wrap_modules(model, torch)
    try:
        with profile(activities=acts, profile_memory=True, record_shapes=False) as prof:
            run()
    finally:
        for h in hooks:
            h.remove()
    acc, calls = _attribute(prof.profiler.kineto_results.events())
    rows = []
    for name, n in calls.items():
        a = acc.get(name, {"cpu": 0, "device": 0, "alloc": 0})
        rows.append({"name": name[len("module::"):], "kind": "module", "calls": n,
                     "self_device_memory_bytes": a["device"], "device_memory_bytes": None,
                     "self_cpu_memory_bytes": a["cpu"], "cpu_memory_bytes": None,
                     "self_allocated_bytes": a["alloc"]})
    for ev in prof.key_averages():
        if ev.key.startswith("module::") or ev.key.startswith("pdlib_pass_"):
            continue
        rows.append({"name": ev.key, "kind": "op", "calls": ev.count,
                     "self_device_memory_bytes": int(getattr(ev, "self_device_memory_usage", 0) or 0),
                     "device_memory_bytes": int(getattr(ev, "device_memory_usage", 0) or 0),
                     "self_cpu_memory_bytes": int(ev.self_cpu_memory_usage or 0),
                     "cpu_memory_bytes": int(ev.cpu_memory_usage or 0), "self_allocated_bytes": None})
    sort_key = "self_device_memory_bytes" if device != "cpu" else "self_cpu_memory_bytes"
    rows.sort(key=lambda r: (-(r[sort_key] or 0), r["name"]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())
    return {"path": str(Path(path)), "sorted_by": sort_key, "rows": len(rows),
            "top": [{k: rows[i][k] for k in ("name", "kind", sort_key)} for i in range(min(5, len(rows)))]}


def read_table(path):
    """The per-layer CSV as a list of dicts (ints where numeric, None where empty)."""
    with open(path, newline="") as f:
        out = []
        for r in csv.DictReader(f):
            out.append({k: (r[k] if k in ("name", "kind") else (int(r[k]) if r[k] != "" else None)) for k in r})
        return out
