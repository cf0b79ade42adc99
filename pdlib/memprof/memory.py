"""Memory probes for the breakdown profiler: devices, cache bytes, per-forward-pass spikes, totals.

Two trackers with one interface (``start()``, forward pre/post hooks, ``stop() -> dict``):

* ``CudaTracker``: the caching allocator's counters. Before each forward pass it reads
  ``memory_allocated`` and resets the peak; after it reads ``max_memory_allocated``. The
  run's peak allocated/reserved is the max over those windows (read before each reset).
  Non-allocator bytes (CUDA context, driver) come from NVML's per-process usage minus
  ``memory_reserved``; without NVML (or when the process is not listed, e.g. in a PID
  namespace) from ``mem_get_info`` (device-wide, so other processes count too — noted).
* ``CpuTracker``: torch's CPU allocator reports every allocation and free to
  ``torch.profiler`` (``profile_memory=True``) as ``[memory]`` events with signed byte
  counts; each forward pass is wrapped in a ``record_function`` range, so the live-bytes
  curve (cumulative sum in time order) gives each pass's start level and peak. The process
  total is the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``).
  ``tracemalloc`` cannot see torch's allocator, hence this route.

A pass's activation spike is ``peak_in_pass - live_at_pass_start - KV growth in the pass``
(KV growth read from the cache tensors before and after the pass).
"""
from __future__ import annotations

import os
from pathlib import Path


def resolve_device(torch, device) -> tuple[str, list[int]]:
    """``(device, GPU indices)``: ``None`` -> cuda when available, else cpu; ``cuda`` -> the
    current GPU; ``auto`` -> every visible GPU (the model sharded with ``device_map="auto"``)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} needs CUDA, and torch.cuda.is_available() is False here")
    if device == "auto":
        return "auto", list(range(torch.cuda.device_count()))
    if device.startswith("cuda"):
        idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return f"cuda:{idx}", [idx]
    if device == "cpu":
        return "cpu", []
    raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}")


def check_run_args(max_tokens, batch_size, repeats) -> None:
    """ValueError naming the first of ``max_tokens``, ``batch_size``, ``repeats`` that is not an integer >= 1."""
    for name, v in (("max_tokens", max_tokens), ("batch_size", batch_size), ("repeats", repeats)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def cache_tensors(cache):
    """The K/V tensors of a transformers Cache (``.layers[i].keys/.values``) or a legacy
    tuple-of-tuples cache."""
    if cache is None:
        return []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        out = []
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if t is not None and hasattr(t, "untyped_storage"):
                    out.append(t)
        return out
    if isinstance(cache, (tuple, list)):
        return [t for pair in cache for t in pair if hasattr(t, "untyped_storage")]
    raise TypeError(f"unknown KV cache type {type(cache).__name__}: no .layers and not a tuple")


def cache_bytes(cache) -> dict:
    """``allocated``: bytes of the distinct storages behind the K/V tensors (what the
    allocator holds, including any preallocated, not yet written slots); ``logical``:
    numel x element size of the tensors as they are viewed."""
    seen, allocated, logical = set(), 0, 0
    for t in cache_tensors(cache):
        s = t.untyped_storage()
        key = (s.data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            allocated += s.nbytes()
        logical += t.numel() * t.element_size()
    return {"allocated": allocated, "logical": logical, "num_tensors": len(cache_tensors(cache))}


def _pass_kv(kwargs):
    return cache_bytes(kwargs.get("past_key_values"))["allocated"] if kwargs.get("past_key_values") is not None else 0


def _input_len(args, kwargs):
    x = kwargs.get("input_ids")
    if x is None and args:
        x = args[0]
    if x is None:
        x = kwargs.get("inputs_embeds")
    return int(x.shape[1]) if x is not None else None


# --------------------------------------------------------------------------- CPU


def rss_bytes() -> int | None:
    return _status_field("VmRSS")


def _status_field(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class CpuTracker:
    """Per-pass allocation spikes from torch.profiler memory events; total from peak RSS."""

    kind = "cpu"

    def __init__(self):
        import torch
        self.torch = torch
        self.passes = []
        self._open = []

    def start(self):
        from torch.profiler import ProfilerActivity, profile
        self.rss_peak_reset = reset_peak_rss()
        self.rss_start = rss_bytes()
        self.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self.prof.__enter__()

    def pre_hook(self, module, args, kwargs):
        i = len(self.passes)
        rf = self.torch.profiler.record_function(f"pdlib_pass_{i}")
        rf.__enter__()
        self._open.append(rf)
        self.passes.append({"index": i, "tokens": _input_len(args, kwargs), "kv_before": _pass_kv(kwargs)})

    def post_hook(self, module, args, kwargs, output):
        self._open.pop().__exit__(None, None, None)
        self.passes[-1]["kv_after"] = _pass_kv(kwargs)

    def stop(self) -> dict:
        self.prof.__exit__(None, None, None)
        rss_peak = _status_field("VmHWM") if self.rss_peak_reset else None
        events = self.prof.profiler.kineto_results.events()
        mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"
                     and str(e.device_type()).endswith("CPU"))
        ranges = {e.name(): (e.start_ns(), e.start_ns() + e.duration_ns()) for e in events
                  if e.name().startswith("pdlib_pass_")}
        live, curve = 0, []
        for t, nb in mem:
            live += nb
            curve.append((t, live))
        run_peak = max((v for _, v in curve), default=0)
        for p in self.passes:
            t0, t1 = ranges.get(f"pdlib_pass_{p['index']}", (None, None))
            if t0 is None:
                raise RuntimeError(f"profiler lost the range of forward pass {p['index']}")
            before = [v for t, v in curve if t < t0]
            inside = [v for t, v in curve if t0 <= t <= t1]
            start = before[-1] if before else 0
            p["live_start"] = start
            p["peak"] = max(inside + [start])
            p["live_end"] = inside[-1] if inside else start
        del self.prof
        return {"kind": "cpu", "passes": self.passes, "run_peak_live_delta": run_peak,
                "final_live_delta": curve[-1][1] if curve else 0,
                "rss_start": self.rss_start, "rss_peak": rss_peak,
                "rss_peak_reason": None if rss_peak is not None else
                "peak RSS not resettable (/proc/self/clear_refs not writable); total not measurable"}


# --------------------------------------------------------------------------- CUDA


def nvml_process_bytes(device_index: int) -> int | None:
    """This process's memory on a GPU from NVML, or None (no NVML / not listed)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(_physical_index(device_index))
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
    except Exception:  # noqa: BLE001 (pynvml raises many NVMLError kinds; no NVML -> None)
        return None
    return None


def _physical_index(i: int) -> int:
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis:
        parts = [x.strip() for x in vis.split(",") if x.strip()]
        if i < len(parts) and parts[i].isdigit():
            return int(parts[i])
    return i


def non_allocator_bytes(torch, device_index: int) -> tuple[int, str]:
    """Bytes this process holds on the GPU outside torch's caching allocator (CUDA context,
    driver, libraries' own allocations) and how they were measured."""
    torch.cuda.synchronize(device_index)
    reserved = torch.cuda.memory_reserved(device_index)
    used = nvml_process_bytes(device_index)
    if used is not None:
        return max(used - reserved, 0), "NVML per-process usage minus torch memory_reserved"
    free, total = torch.cuda.mem_get_info(device_index)
    return max(total - free - reserved, 0), ("cudaMemGetInfo device usage minus torch memory_reserved "
                                            "(device-wide: other processes on this GPU count too)")


class CudaTracker:
    """Per-pass allocation spikes from the caching allocator's peak counters (all devices)."""

    kind = "cuda"

    def __init__(self, devices):
        import torch
        self.torch = torch
        self.devices = list(devices)
        self.passes = []
        self.run_peak_alloc = {d: 0 for d in self.devices}
        self.run_peak_reserved = {d: 0 for d in self.devices}

    def _sync(self):
        for d in self.devices:
            self.torch.cuda.synchronize(d)

    def _fold_peaks(self):
        for d in self.devices:
            self.run_peak_alloc[d] = max(self.run_peak_alloc[d], self.torch.cuda.max_memory_allocated(d))
            self.run_peak_reserved[d] = max(self.run_peak_reserved[d], self.torch.cuda.max_memory_reserved(d))

    def _reset(self):
        for d in self.devices:
            self.torch.cuda.reset_peak_memory_stats(d)

    def start(self):
        self._sync()
        self._reset()
        self.alloc_start = {d: self.torch.cuda.memory_allocated(d) for d in self.devices}

    def pre_hook(self, module, args, kwargs):
        self._sync()
        self._fold_peaks()
        self._reset()
        live = sum(self.torch.cuda.memory_allocated(d) for d in self.devices)
        self.passes.append({"index": len(self.passes), "tokens": _input_len(args, kwargs),
                            "kv_before": _pass_kv(kwargs), "live_start": live})

    def post_hook(self, module, args, kwargs, output):
        self._sync()
        p = self.passes[-1]
        p["peak"] = sum(self.torch.cuda.max_memory_allocated(d) for d in self.devices)
        p["live_end"] = sum(self.torch.cuda.memory_allocated(d) for d in self.devices)
        p["kv_after"] = _pass_kv(kwargs)
        self._fold_peaks()

    def stop(self) -> dict:
        self._sync()
        self._fold_peaks()
        per_device = []
        for d in self.devices:
            extra, how = non_allocator_bytes(self.torch, d)
            props = self.torch.cuda.get_device_properties(d)
            per_device.append({"index": d, "name": props.name, "total_memory": int(props.total_memory),
                               "peak_allocated": self.run_peak_alloc[d],
                               "peak_reserved": self.run_peak_reserved[d],
                               "allocated_end": self.torch.cuda.memory_allocated(d),
                               "non_allocator": extra, "non_allocator_method": how})
        return {"kind": "cuda", "passes": self.passes, "devices": per_device}


def pass_spikes(passes) -> list[dict]:
    """Activation spike of each forward pass: peak - live at start - KV growth in the pass."""
    out = []
    for p in passes:
        kv_growth = max(p.get("kv_after", 0) - p.get("kv_before", 0), 0)
        out.append({"index": p["index"], "tokens": p["tokens"], "kv_growth": kv_growth,
                    "spike": max(p["peak"] - p["live_start"] - kv_growth, 0)})
    return out


def install_hooks(model, tracker):
    """Forward pre/post hooks on the top-level model (one call per prefill/decode pass)."""
    return [model.register_forward_pre_hook(tracker.pre_hook, with_kwargs=True),
            model.register_forward_hook(tracker.post_hook, with_kwargs=True)]
