"""Memory breakdown profiler (seed 002): where the memory of one generate call goes.

``profile_breakdown(model, ...)`` loads the model (``pdlib.models.build_causal_lm``: random
weights from a config, or pretrained), runs one warm-up generation, then ``repeats``
measured generations of ``max_tokens`` tokens for ``batch_size`` copies of the prompt, and
returns a ``Breakdown``: the seed's structure (``memory_breakdown``, ``model_info``,
``gpu_info``) plus the measurements behind each number, the spread over repeats and notes;
``profile_memory`` returns its JSON dict. GB = 1e9 bytes. Components:

* ``model_weights_gb`` = parameters x bytes per element (unique parameters, tied weights
  counted once), cross-checked with the allocator (CUDA: ``memory_allocated`` delta over
  loading; CPU: bytes of the distinct parameter storages and the RSS delta of loading).
* ``kv_cache_gb`` = bytes of the storages behind the K/V tensors the engine actually holds
  after the run (a static cache's unwritten slots included), next to the formula
  ``pdlib.theory.kv_bytes_per_token x batch x tokens``. ``generate`` never runs the model on
  the last sampled token, so the cache holds ``total_sequence_length - 1`` tokens.
* ``activations_gb`` = the largest per-forward-pass spike: allocator peak during the pass
  minus live bytes at its start minus the pass's KV growth (``memory``). It
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

from .memory import (
    CpuTracker,
    CudaTracker,
    cache_bytes,
    check_run_args,
    install_hooks,
    pass_spikes,
    resolve_device,
    rss_bytes,
)
from .model import prompt_ids
from .result import GB, Breakdown, gb


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
    tracker = CudaTracker(devices) if device != "cpu" else CpuTracker()
    hooks = install_hooks(model, tracker)
    try:
        tracker.start()
        out = _generate(model, input_ids, max_tokens, cache)
        probe = tracker.stop()
    finally:
        for h in hooks:
            h.remove()
    kv = cache_bytes(out.past_key_values)
    pkv = out.past_key_values
    cached = int(pkv.get_seq_length()) if hasattr(pkv, "get_seq_length") else None
    generated = int(out.sequences.shape[1] - input_ids.shape[1])
    spikes = pass_spikes(probe["passes"])
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


def _gpu_info(runs, device, devices, null_reasons) -> dict:
    if device == "cpu":
        return Breakdown.cpu_gpu_block(null_reasons)
    last = runs[-1]["probe"]["devices"]
    devs = [{"index": d["index"], "name": d["name"], "total_memory_gb": gb(d["total_memory"]),
             "peak_allocated_gb": gb(d["peak_allocated"]), "peak_reserved_gb": gb(d["peak_reserved"]),
             "non_allocator_gb": gb(d["non_allocator"]), "non_allocator_method": d["non_allocator_method"],
             "used_at_peak_gb": gb(d["peak_reserved"] + d["non_allocator"])} for d in last]
    if len(devices) > 1:
        extra = statistics.fmean(
            sum(d["peak_reserved"] + d["non_allocator"] - d["peak_allocated"] for d in r["probe"]["devices"][1:])
            for r in runs)
        mgo = gb(extra)
    else:
        mgo = None
        null_reasons["gpu_info.multi_gpu_overhead_gb"] = ("model on one GPU; pass device='auto' with several "
                                                          "visible GPUs to shard it")
    return {"num_gpus": len(devices), "devices": devs, "multi_gpu_overhead_gb": mgo}


def profile_memory(model, weights="random", prompt=None, max_tokens=128, batch_size=1, dtype="float16",
                   engine="hf", device=None, repeats=3, *, prompt_length=None, cache="dynamic",
                   per_layer=None, seed=0) -> dict:
    """``profile_breakdown(...).to_json()``: the seed's JSON-ready dict (``result.Breakdown``)."""
    return profile_breakdown(model, weights, prompt, max_tokens, batch_size, dtype, engine, device, repeats,
                             prompt_length=prompt_length, cache=cache, per_layer=per_layer, seed=seed).to_json()


def profile_breakdown(model, weights="random", prompt=None, max_tokens=128, batch_size=1, dtype="float16",
                      engine="hf", device=None, repeats=3, *, prompt_length=None, cache="dynamic",
                      per_layer=None, seed=0) -> Breakdown:
    """Measure the memory breakdown of generating ``max_tokens`` tokens for ``batch_size``
    copies of a prompt (see the module docstring). ``engine="native"``: pdlib's native engine
    (``native``). ``per_layer``: a CSV path for the torch.profiler per-layer table (``layers``)."""
    if engine == "native":
        from .native import profile_native
        return profile_native(model, weights=weights, prompt=prompt, max_tokens=max_tokens,
                              batch_size=batch_size, dtype=dtype, device=device, repeats=repeats,
                              prompt_length=prompt_length, seed=seed)
    if engine != "hf":
        raise ValueError(f"engine must be 'hf' or 'native', got {engine!r}")
    if cache not in ("dynamic", "static"):
        raise ValueError(f"cache must be 'dynamic' or 'static', got {cache!r}")
    check_run_args(max_tokens, batch_size, repeats)
    import torch

    from pdlib.models import build_causal_lm
    dev, devices = resolve_device(torch, device)
    dtype = str(dtype).replace("torch.", "")
    notes = []
    gc.collect()
    if dev == "cpu":
        base = {"rss": rss_bytes(), "alloc": 0}
    else:
        for d in devices:
            torch.cuda.synchronize(d)
        torch.cuda.empty_cache()
        base = {"rss": None, "alloc": sum(torch.cuda.memory_allocated(d) for d in devices)}
        if base["alloc"]:
            notes.append(f"{base['alloc'] / GB:.3f} GB were already allocated on the GPU before loading; "
                         "subtracted from the totals")
    m, config = build_causal_lm(model, weights=weights, dtype=dtype, device=dev, seed=seed)
    winfo = _weights_info(m)
    if dev == "cpu":
        rss_loaded = rss_bytes()
        w_alloc, w_alloc_how = winfo["storage_bytes"], "bytes of the distinct parameter and buffer storages"
        winfo["rss_load"] = rss_loaded - base["rss"] if rss_loaded and base["rss"] else None
    else:
        for d in devices:
            torch.cuda.synchronize(d)
        w_alloc = sum(torch.cuda.memory_allocated(d) for d in devices) - base["alloc"]
        w_alloc_how = "torch.cuda.memory_allocated delta over loading the model"
        winfo["rss_load"] = None
    winfo["allocator_bytes"], winfo["allocator_method"] = w_alloc, w_alloc_how
    ids, source = prompt_ids(model, prompt, prompt_length, int(config.vocab_size))
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
        from .layers import profile_layers
        def one_generate(model_=m):
            return _generate(model_, input_ids, int(max_tokens), cache)
        layers_info = profile_layers(m, one_generate, per_layer, device=dev)
    info = Breakdown.model_info_block(config, name=model, dtype=dtype, num_parameters=winfo["num_parameters"],
                                      prompt_length=len(ids), generated_length=runs[-1]["generated"],
                                      batch_size=int(batch_size), weights=weights, engine="hf", cache=cache,
                                      prompt_source=source)
    out = _assemble(info, config, winfo, runs, layers_info, dev, devices, int(max_tokens), int(repeats), notes)
    del m
    gc.collect()
    if dev != "cpu":
        torch.cuda.empty_cache()
    return out


def _assemble(info, config, winfo, runs, layers_info, dev, devices, max_tokens, repeats, notes) -> Breakdown:
    """The ``Breakdown`` of the hf path from the measured runs."""
    B, gen, S = info["batch_size"], info["generated_length"], info["total_sequence_length"]
    if gen != max_tokens:
        notes.append(f"generated {gen} tokens, not max_tokens={max_tokens}")
    kvpt, kv_reason = _kv_formula(config, info["dtype"])
    null_reasons = {}
    per_rep = [{"model_weights_gb": gb(winfo["params_x_bytes"]), "kv_cache_gb": gb(r["kv_allocated"]),
                "activations_gb": gb(r["activations"]),
                "framework_overhead_gb": gb(r["overhead"]), "total_gb": gb(r["total"])} for r in runs]
    breakdown, spread = Breakdown.summarize(per_rep)
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
          "formula_gb": gb(kvpt * B * S) if kvpt else None,
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
    gpu_info = _gpu_info(runs, dev, devices, null_reasons)
    acts = {"gb": breakdown["activations_gb"],
            "prefill_spike_gb": statistics.fmean(gb(r["prefill_spike"]) for r in runs),
            "decode_spike_max_gb": (statistics.fmean(gb(r["decode_spike_max"]) for r in runs)
                                    if runs[-1]["decode_spike_max"] is not None else None),
            "forward_passes": runs[-1]["forward_passes"],
            "method": ("per forward pass: torch.cuda max_memory_allocated - memory_allocated at pass start "
                       "- KV growth in the pass; max over passes" if dev != "cpu" else
                       "per forward pass: torch.profiler CPU allocator events (peak live bytes - live bytes "
                       "at pass start - KV growth in the pass); max over passes")}
    if acts["decode_spike_max_gb"] is None:
        null_reasons["measurements.activations.decode_spike_max_gb"] = "max_tokens=1: no decode pass"
    weights_m = {"gb": gb(winfo["params_x_bytes"]), "params_x_bytes": winfo["params_x_bytes"],
                 "buffers_bytes": winfo["buffers_bytes"], "allocator_bytes": winfo["allocator_bytes"],
                 "allocator_method": winfo["allocator_method"],
                 "allocator_minus_params_x_bytes": winfo["allocator_bytes"] - winfo["params_x_bytes"],
                 "rss_delta_loading_gb": gb(winfo["rss_load"])}
    if winfo["rss_load"] is None:
        null_reasons["measurements.model_weights.rss_delta_loading_gb"] = (
            "on GPU the allocator delta is the cross-check" if dev != "cpu" else "RSS not readable")
    total_m = {"method": ("torch.cuda max_memory_reserved + bytes outside the allocator (CUDA context) - "
                          "bytes allocated before loading" if dev != "cpu" else
                          "peak RSS of the run (VmHWM after /proc/self/clear_refs) - RSS before loading"),
               "peak_tensor_gb": statistics.fmean(gb(r["peak_tensor_bytes"]) for r in runs),
               "rss_peak_delta_gb": gb(runs[-1]["rss_delta"])}
    if dev != "cpu":
        null_reasons["measurements.total.rss_peak_delta_gb"] = "GPU run: the total is the device's"
    elif runs[-1]["rss_delta"] is None:
        null_reasons["measurements.total.rss_peak_delta_gb"] = runs[-1]["total_reason"]
    env = Breakdown.environment_block(processor=platform.processor() or None)
    if layers_info is None:
        null_reasons["per_layer"] = "not requested (per_layer=CSV path / --per-layer)"
    if info["head_dim"] is None:
        null_reasons["model_info.head_dim"] = "config has no head_dim (hidden_size / heads)"
    if env["processor"] is None:
        null_reasons["environment.processor"] = "platform.processor() is empty here"
    return Breakdown(
        memory_breakdown=breakdown, model_info=info, gpu_info=gpu_info,
        device=dev if dev != "auto" else "auto (" + ", ".join(f"cuda:{d}" for d in devices) + ")",
        measurements={"model_weights": weights_m, "kv_cache": kv, "activations": acts,
                      "framework_overhead": Breakdown.overhead_block(
                          breakdown, "total - weights - KV - activations (residual)"),
                      "total": total_m},
        repeats=Breakdown.repeats_block(per_rep, spread, repeats), per_layer=layers_info,
        null_reasons=null_reasons, notes=notes, environment=env)
