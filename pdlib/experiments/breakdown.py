"""Memory breakdown profiler (seed 002): where the memory of one generate call goes.

``profile_memory(model, ...)`` loads the model (random weights from a config, or
pretrained), runs one warm-up generation, then ``repeats`` measured generations of
``max_tokens`` tokens for ``batch_size`` copies of the prompt, and returns the seed's JSON
structure (``memory_breakdown``, ``model_info``, ``gpu_info``) plus the measurements behind
each number, the spread over repeats and notes. GB = 1e9 bytes. Components:

* ``model_weights_gb`` = parameters x bytes per element (unique parameters, tied weights
  counted once), cross-checked with the allocator (CUDA: ``memory_allocated`` delta over
  loading; CPU: bytes of the distinct parameter storages and the RSS delta of loading).
* ``kv_cache_gb`` = bytes of the storages behind the K/V tensors the engine actually holds
  after the run (a static cache's unwritten slots included), next to the formula
  ``pdlib.theory.kv_bytes_per_token x batch x tokens``. ``generate`` never runs the model on
  the last sampled token, so the cache holds ``total_sequence_length - 1`` tokens.
* ``activations_gb`` = the largest per-forward-pass spike: allocator peak during the pass
  minus live bytes at its start minus the pass's KV growth (``breakdown_memory``). It
  includes the DynamicCache's ``torch.cat`` copy of one layer's K/V, the logits, and
  attention/MLP temporaries.
* ``total_gb`` = CUDA: peak bytes reserved by torch's allocator + the process's bytes
  outside it (CUDA context, from NVML); CPU: peak RSS of the run minus RSS before loading.
* ``framework_overhead_gb`` = total - weights - KV - activations (allocator caching and
  fragmentation, CUDA context, libraries; on CPU malloc arenas and the profiler's own
  buffers). A residual: it may be negative (the components' peaks need not coincide, or
  freed memory was reused); the JSON says so when it is.
* ``gpu_info.multi_gpu_overhead_gb`` (model sharded with ``device="auto"`` over several
  GPUs) = for every GPU after the first, its bytes that are not tensors at the peak
  (context + allocator slack): the fixed cost each extra GPU adds. Null with the reason
  otherwise.
Every null value has its reason in ``null_reasons`` (keyed by the dotted path).
"""
from __future__ import annotations

import gc
import platform
import statistics

from pdlib import theory

from . import breakdown_memory as bm
from . import breakdown_model as bmod

GB = 1e9
COMPONENTS = ("model_weights_gb", "kv_cache_gb", "activations_gb", "framework_overhead_gb", "total_gb")
SCHEMA = "pdlib.memory_breakdown/1"


def _gb(b):
    return None if b is None else b / GB


def _resolve_device(torch, device):
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


def _weights_info(model) -> dict:
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    pbytes = sum(p.numel() * p.element_size() for p in params)
    bufs = list(model.buffers())
    seen, storage = set(), 0
    for t in params + bufs:
        s = t.untyped_storage()
        if (s.data_ptr(), t.device) not in seen:
            seen.add((s.data_ptr(), t.device))
            storage += s.nbytes()
    return {"num_parameters": int(n), "params_x_bytes": int(pbytes),
            "buffers_bytes": int(sum(b.numel() * b.element_size() for b in bufs)),
            "storage_bytes": int(storage),
            "devices": sorted({str(p.device) for p in params})}


def _kv_formula(config, dtype):
    try:
        return theory.kv_bytes_per_token(config, dtype), None
    except ValueError as e:
        return None, str(e)


def _spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def _generate(model, input_ids, max_tokens, cache):
    import torch
    pad = model.generation_config.pad_token_id
    kw = {"max_new_tokens": max_tokens, "min_new_tokens": max_tokens, "do_sample": False,
          "return_dict_in_generate": True, "attention_mask": torch.ones_like(input_ids),
          "pad_token_id": pad if pad is not None else 0}
    if cache == "static":
        kw["cache_implementation"] = "static"
    with torch.inference_mode():
        return model.generate(input_ids, **kw)


def _one_run(torch, model, input_ids, max_tokens, cache, device, devices, weights_bytes, base):
    tracker = bm.CudaTracker(devices) if device != "cpu" else bm.CpuTracker()
    hooks = bm.install_hooks(model, tracker)
    try:
        tracker.start()
        out = _generate(model, input_ids, max_tokens, cache)
        probe = tracker.stop()
    finally:
        for h in hooks:
            h.remove()
    kv = bm.cache_bytes(out.past_key_values)
    pkv = out.past_key_values
    cached = int(pkv.get_seq_length()) if hasattr(pkv, "get_seq_length") else None
    generated = int(out.sequences.shape[1] - input_ids.shape[1])
    spikes = bm.pass_spikes(probe["passes"])
    act = max(s["spike"] for s in spikes)
    run = {"kv_allocated": kv["allocated"], "kv_logical": kv["logical"], "cached_tokens": cached,
           "generated": generated, "cache_class": type(pkv).__name__, "activations": act,
           "prefill_spike": spikes[0]["spike"],
           "decode_spike_max": max((s["spike"] for s in spikes[1:]), default=None),
           "forward_passes": len(spikes), "probe": probe}
    if device == "cpu":
        total = probe["rss_peak"] - base["rss"] if probe["rss_peak"] is not None and base["rss"] else None
        run["peak_tensor_bytes"] = weights_bytes + probe["run_peak_live_delta"]
        run["rss_delta"] = total
        run["total_reason"] = probe["rss_peak_reason"]
        if total is not None and total < run["peak_tensor_bytes"]:
            run["total_reason"] = (f"peak RSS grew by {total} B, less than the {run['peak_tensor_bytes']} B of tensors "
                                   "live at the peak: this process reused memory it had freed earlier, so RSS "
                                   "cannot give the total; profile in a fresh process (the CLI does)")
            total = None
        run["total"] = total
    else:
        devs = probe["devices"]
        run["total"] = sum(d["peak_reserved"] + d["non_allocator"] for d in devs) - base["alloc"]
        run["total_reason"] = None
        run["rss_delta"] = None
        run["peak_tensor_bytes"] = sum(d["peak_allocated"] for d in devs) - base["alloc"]
    run["overhead"] = None if run["total"] is None else run["total"] - weights_bytes - kv["allocated"] - act
    del out, pkv
    return run


def _gpu_info(runs, device, devices) -> tuple[dict, dict]:
    reasons = {}
    if device == "cpu":
        reasons["gpu_info.devices"] = "run on CPU: no GPU memory to report"
        reasons["gpu_info.multi_gpu_overhead_gb"] = "run on CPU: the model is not sharded over GPUs"
        return {"num_gpus": 0, "devices": None, "multi_gpu_overhead_gb": None}, reasons
    last = runs[-1]["probe"]["devices"]
    devs = [{"index": d["index"], "name": d["name"], "total_memory_gb": _gb(d["total_memory"]),
             "peak_allocated_gb": _gb(d["peak_allocated"]), "peak_reserved_gb": _gb(d["peak_reserved"]),
             "non_allocator_gb": _gb(d["non_allocator"]), "non_allocator_method": d["non_allocator_method"],
             "used_at_peak_gb": _gb(d["peak_reserved"] + d["non_allocator"])} for d in last]
    if len(devices) > 1:
        extra = statistics.fmean(
            sum(d["peak_reserved"] + d["non_allocator"] - d["peak_allocated"] for d in r["probe"]["devices"][1:])
            for r in runs)
        mgo = _gb(extra)
    else:
        mgo = None
        reasons["gpu_info.multi_gpu_overhead_gb"] = ("model on one GPU; pass device='auto' with several "
                                                     "visible GPUs to shard it")
    return {"num_gpus": len(devices), "devices": devs, "multi_gpu_overhead_gb": mgo}, reasons


def profile_memory(model, weights="random", prompt=None, max_tokens=128, batch_size=1, dtype="float16",
                   engine="hf", device=None, repeats=3, *, prompt_length=None, cache="dynamic",
                   per_layer=None, seed=0) -> dict:
    """Measure the memory breakdown of generating ``max_tokens`` tokens for ``batch_size``
    copies of a prompt (see the module docstring). ``per_layer``: a CSV path for the
    torch.profiler per-layer table (``breakdown_layers``). Returns the JSON-ready dict."""
    if engine == "native":
        from .breakdown_native import profile_memory_native
        return profile_memory_native(model, weights=weights, prompt=prompt, max_tokens=max_tokens,
                                     batch_size=batch_size, dtype=dtype, device=device, repeats=repeats,
                                     prompt_length=prompt_length, seed=seed)
    if engine != "hf":
        raise ValueError(f"engine must be 'hf' or 'native', got {engine!r}")
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache must be 'dynamic' or 'static', got {cache!r}")
    for name, v in (("max_tokens", max_tokens), ("batch_size", batch_size), ("repeats", repeats)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    import torch
    import transformers
    dev, devices = _resolve_device(torch, device)
    dtype = str(dtype).replace("torch.", "")
    notes = []
    gc.collect()
    if dev == "cpu":
        base = {"rss": bm.rss_bytes(), "alloc": 0}
    else:
        for d in devices:
            torch.cuda.synchronize(d)
        torch.cuda.empty_cache()
        base = {"rss": None, "alloc": sum(torch.cuda.memory_allocated(d) for d in devices)}
        if base["alloc"]:
            notes.append(f"{base['alloc'] / GB:.3f} GB were already allocated on the GPU before loading; "
                         "subtracted from the totals")
    m, config = bmod.load_model(model, weights, dtype, device_map=None if dev == "cpu" else dev, seed=seed)
    winfo = _weights_info(m)
    if dev == "cpu":
        rss_loaded = bm.rss_bytes()
        w_alloc, w_alloc_how = winfo["storage_bytes"], "bytes of the distinct parameter and buffer storages"
        rss_load = rss_loaded - base["rss"] if rss_loaded and base["rss"] else None
    else:
        for d in devices:
            torch.cuda.synchronize(d)
        w_alloc = sum(torch.cuda.memory_allocated(d) for d in devices) - base["alloc"]
        w_alloc_how = "torch.cuda.memory_allocated delta over loading the model"
        rss_load = None
    ids, source = bmod.prompt_ids(model, prompt, prompt_length, int(config.vocab_size))
    first = next(m.parameters()).device
    input_ids = torch.tensor([ids] * int(batch_size), dtype=torch.long, device=first)

    _generate(m, input_ids, int(max_tokens), cache)          # warm-up (kernels, allocator pools)
    gc.collect()
    if dev != "cpu":
        torch.cuda.empty_cache()
    runs = []
    for _ in range(int(repeats)):
        gc.collect()
        runs.append(_one_run(torch, m, input_ids, int(max_tokens), cache, dev, devices,
                             winfo["params_x_bytes"], base))
        gc.collect()
    layers_info = None
    if per_layer is not None:
        from .breakdown_layers import profile_layers
        def one_generate(model_=m):
            return _generate(model_, input_ids, int(max_tokens), cache)
        layers_info = profile_layers(m, one_generate, per_layer, device=dev)

    P, B = len(ids), int(batch_size)
    gen = runs[-1]["generated"]
    S = P + gen
    if gen != max_tokens:
        notes.append(f"generated {gen} tokens, not max_tokens={max_tokens}")
    kvpt, kv_reason = _kv_formula(config, dtype)
    null_reasons = {}
    per_rep = []
    for r in runs:
        per_rep.append({"model_weights_gb": _gb(winfo["params_x_bytes"]), "kv_cache_gb": _gb(r["kv_allocated"]),
                        "activations_gb": _gb(r["activations"]),
                        "framework_overhead_gb": _gb(r["overhead"]), "total_gb": _gb(r["total"])})
    spread = {c: _spread([p[c] for p in per_rep]) for c in COMPONENTS}
    breakdown = {c: (spread[c]["mean"] if spread[c] else None) for c in COMPONENTS}
    if breakdown["total_gb"] is None:
        null_reasons["memory_breakdown.total_gb"] = next(r["total_reason"] for r in runs if r["total"] is None)
        null_reasons["memory_breakdown.framework_overhead_gb"] = "residual of a total that was not measurable"
    elif breakdown["framework_overhead_gb"] < 0:
        notes.append("framework_overhead_gb is negative: the measured total is smaller than weights + KV + "
                     "activation peak (the components' peaks do not coincide, or freed memory was reused)")
    cached = runs[-1]["cached_tokens"]
    kv = {"measured_gb": breakdown["kv_cache_gb"], "measured_bytes": runs[-1]["kv_allocated"],
          "logical_bytes": runs[-1]["kv_logical"], "cache_class": runs[-1]["cache_class"],
          "cached_tokens": cached, "kv_bytes_per_token": kvpt,
          "formula_bytes_cached_tokens": kvpt * B * cached if kvpt and cached is not None else None,
          "formula_bytes_total_sequence": kvpt * B * S if kvpt else None,
          "formula_gb": _gb(kvpt * B * S) if kvpt else None,
          "method": "storage bytes behind the cache's K/V tensors after the run; formula = "
                    "kv_bytes_per_token x batch x tokens"}
    if kvpt is None:
        for k in ("kv_bytes_per_token", "formula_bytes_cached_tokens", "formula_bytes_total_sequence",
                  "formula_gb"):
            null_reasons[f"measurements.kv_cache.{k}"] = kv_reason
    elif cached is not None and kv["measured_bytes"] != kv["formula_bytes_cached_tokens"]:
        notes.append(f"KV measured {kv['measured_bytes']} B != formula {kv['formula_bytes_cached_tokens']} B "
                     f"for {cached} cached tokens ({runs[-1]['cache_class']}: preallocated or padded slots)")
    if cached is not None and cached == S - 1:
        notes.append("the cache holds total_sequence_length - 1 tokens: generate does not run the model on "
                     "the last sampled token")
    gpu_info, reasons = _gpu_info(runs, dev, devices)
    null_reasons.update(reasons)
    acts = {"gb": breakdown["activations_gb"],
            "prefill_spike_gb": statistics.fmean(_gb(r["prefill_spike"]) for r in runs),
            "decode_spike_max_gb": (statistics.fmean(_gb(r["decode_spike_max"]) for r in runs)
                                    if runs[-1]["decode_spike_max"] is not None else None),
            "forward_passes": runs[-1]["forward_passes"],
            "method": ("per forward pass: torch.cuda max_memory_allocated - memory_allocated at pass start "
                       "- KV growth in the pass; max over passes" if dev != "cpu" else
                       "per forward pass: torch.profiler CPU allocator events (peak live bytes - live bytes "
                       "at pass start - KV growth in the pass); max over passes")}
    if acts["decode_spike_max_gb"] is None:
        null_reasons["measurements.activations.decode_spike_max_gb"] = "max_tokens=1: no decode pass"
    weights_m = {"gb": _gb(winfo["params_x_bytes"]), "params_x_bytes": winfo["params_x_bytes"],
                 "buffers_bytes": winfo["buffers_bytes"], "allocator_bytes": w_alloc,
                 "allocator_method": w_alloc_how,
                 "allocator_minus_params_x_bytes": w_alloc - winfo["params_x_bytes"],
                 "rss_delta_loading_gb": _gb(rss_load)}
    if rss_load is None:
        null_reasons["measurements.model_weights.rss_delta_loading_gb"] = (
            "on GPU the allocator delta is the cross-check" if dev != "cpu" else "RSS not readable")
    total_m = {"method": ("torch.cuda max_memory_reserved + bytes outside the allocator (CUDA context) - "
                          "bytes allocated before loading" if dev != "cpu" else
                          "peak RSS of the run (VmHWM after /proc/self/clear_refs) - RSS before loading"),
               "peak_tensor_gb": statistics.fmean(_gb(r["peak_tensor_bytes"]) for r in runs),
               "rss_peak_delta_gb": _gb(runs[-1]["rss_delta"])}
    if dev != "cpu":
        null_reasons["measurements.total.rss_peak_delta_gb"] = "GPU run: the total is the device's"
    elif runs[-1]["rss_delta"] is None:
        null_reasons["measurements.total.rss_peak_delta_gb"] = runs[-1]["total_reason"]
    result = {
        "schema": SCHEMA,
        "memory_breakdown": breakdown,
        "model_info": {"name": str(model), "dtype": dtype, "num_parameters": winfo["num_parameters"],
                       "prompt_length": P, "generated_length": gen, "total_sequence_length": S,
                       "batch_size": B, "weights": weights, "engine": "hf", "cache": cache,
                       "prompt_source": source, "model_type": getattr(config, "model_type", None),
                       "num_hidden_layers": getattr(config, "num_hidden_layers", None),
                       "num_key_value_heads": getattr(config, "num_key_value_heads", None),
                       "head_dim": getattr(config, "head_dim", None),
                       "hidden_size": getattr(config, "hidden_size", None),
                       "intermediate_size": getattr(config, "intermediate_size", None),
                       "vocab_size": getattr(config, "vocab_size", None)},
        "gpu_info": gpu_info,
        "device": dev if dev != "auto" else "auto (" + ", ".join(f"cuda:{d}" for d in devices) + ")",
        "measurements": {"model_weights": weights_m, "kv_cache": kv, "activations": acts,
                         "framework_overhead": {"gb": breakdown["framework_overhead_gb"],
                                                "negative": (breakdown["framework_overhead_gb"] or 0) < 0,
                                                "method": "total - weights - KV - activations (residual)"},
                         "total": total_m},
        "repeats": {"n": int(repeats), "warmup_runs": 1, "values": per_rep, "spread": spread},
        "per_layer": layers_info,
        "units": "GB = 1e9 bytes",
        "null_reasons": null_reasons,
        "notes": notes,
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "python": platform.python_version(), "machine": platform.machine(),
                        "processor": platform.processor() or None},
    }
    if layers_info is None:
        null_reasons["per_layer"] = "not requested (per_layer=CSV path / --per-layer)"
    if result["model_info"]["head_dim"] is None:
        null_reasons["model_info.head_dim"] = "config has no head_dim (hidden_size / heads)"
    if result["environment"]["processor"] is None:
        null_reasons["environment.processor"] = "platform.processor() is empty here"
    del m
    gc.collect()
    if dev != "cpu":
        torch.cuda.empty_cache()
    return result


def null_paths(obj, prefix=""):
    """Dotted paths of every None in a profile (for the 'every null has a reason' check)."""
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            if k == "null_reasons":
                continue
            out += null_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in null_paths(v, f"{prefix}[{i}]")]
    return [prefix] if obj is None else []
