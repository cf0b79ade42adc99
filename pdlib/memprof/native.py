"""Memory breakdown of pdlib's native engine (``engine="native"``): the same ``Breakdown`` as the hf path.

The native engine preallocates its paged KV pool; here the pool is sized to exactly what
the batch needs (``B x pages(P + max_tokens + 1)`` whole pages, plus the engine's scratch
page), so ``kv_cache_gb`` = pool bytes (allocated) and ``measurements.kv_cache`` also gives
the peak KV bytes held during the run (tokens held x bytes/token, from the step log) next
to the formula. One exclusive-batching cycle (FixedK with N = k = batch) runs the batch:
one packed prefill, then decode steps until every request has ``max_tokens`` tokens
(termination ``dataset``: EOS ignored). Activations: CUDA: the engine's own accounting
(peak allocated since the run started - weights - KV pool; CUDA-graph pools included);
CPU: torch.profiler allocator events around each decoder pass (``CpuTracker``).
"""
from __future__ import annotations

import gc
import math

from pdlib import theory

from .memory import (
    CpuTracker,
    check_run_args,
    install_hooks,
    non_allocator_bytes,
    pass_spikes,
    resolve_device,
    rss_bytes,
)
from .model import prompt_ids
from .result import Breakdown, gb


def _page_size(torch, device) -> int:
    if device == "cpu":
        return 16
    try:
        import flash_attn  # noqa: F401
        return 256
    except ImportError:
        return 16


def profile_native(model, weights="random", prompt=None, max_tokens=128, batch_size=1,
                   dtype="float16", device=None, repeats=3, prompt_length=None, seed=0) -> Breakdown:
    """The ``Breakdown`` of the native engine (see the module docstring)."""
    import torch

    from pdlib.engines import get_engine
    from pdlib.models import load_hf_config
    from pdlib.policy import ExclusiveBatching, FixedK
    from pdlib.workload import Request, Workload

    check_run_args(max_tokens, batch_size, repeats)
    dev, devices = resolve_device(torch, device)
    if dev == "auto":
        raise ValueError("engine 'native' runs on one device; device='auto' (sharding) is hf-only")
    dtype = str(dtype).replace("torch.", "")
    B, T = int(batch_size), int(max_tokens)
    config = load_hf_config(model)
    ids, source = prompt_ids(model, prompt, prompt_length, int(config.vocab_size))
    P = len(ids)
    page = _page_size(torch, dev)
    capacity = B * math.ceil((P + T + 1) / page) * page
    gc.collect()
    if dev == "cpu":
        base = {"rss": rss_bytes(), "alloc": 0}
    else:
        torch.cuda.synchronize(devices[0])
        torch.cuda.empty_cache()
        base = {"rss": None, "alloc": torch.cuda.memory_allocated(devices[0])}
    eng = get_engine("native", model=model, weights=weights, dtype=dtype, device=dev, seed=seed,
                     kv_capacity_tokens=capacity, page_size=page, max_batch=B)
    params = list(eng.model.parameters())
    n_params = sum(p.numel() for p in params)
    w_bytes = sum(p.numel() * p.element_size() for p in params)
    wl = Workload("profile-memory", [Request(id=str(i), input_len=P, output_len=T, prompt_ids=list(ids))
                                     for i in range(B)])

    def one_run():
        return eng.run(wl, ExclusiveBatching(FixedK(B, B)), termination="dataset", keep_output_ids=False)

    one_run()                                                        # warm-up
    runs = []
    for _ in range(int(repeats)):
        gc.collect()
        if dev == "cpu":
            tr = CpuTracker()
            hooks = install_hooks(eng.model.get_decoder(), tr)       # the module the engine runs per pass
            try:
                tr.start()
                res = one_run()
                probe = tr.stop()
            finally:
                for h in hooks:
                    h.remove()
            act = max(s["spike"] for s in pass_spikes(probe["passes"]))
            total = probe["rss_peak"] - base["rss"] if probe["rss_peak"] is not None and base["rss"] else None
        else:
            res = one_run()
            act = res.meta["memory"]["activation_peak_bytes"]
            extra, _ = non_allocator_bytes(torch, devices[0])
            total = torch.cuda.max_memory_reserved(devices[0]) + extra - base["alloc"]
        mem = res.meta["memory"]
        runs.append({"act": act, "total": total, "kv_pool": mem["kv_pool_bytes"],
                     "kv_held_peak": int(max(res.log["kv_bytes"])), "mem": mem})
    info = Breakdown.model_info_block(config, name=model, dtype=dtype, num_parameters=n_params, prompt_length=P,
                                      generated_length=T, batch_size=B, weights=weights, engine="native",
                                      cache=f"paged ({page}-token pages)", prompt_source=source)
    gpu = None
    if dev != "cpu":
        props = torch.cuda.get_device_properties(devices[0])
        gpu = {"index": devices[0], "name": props.name, "total_memory_gb": gb(props.total_memory)}
    return _assemble(info, config, runs, w_bytes, eng, capacity, page, gpu, dev, int(repeats))


def _assemble(info, config, runs, w_bytes, eng, capacity, page, gpu, dev, repeats) -> Breakdown:
    """The ``Breakdown`` of the native path from the measured runs."""
    B, S, dtype = info["batch_size"], info["total_sequence_length"], info["dtype"]
    kvpt = eng.cache.bytes_per_token
    per_rep = [{"model_weights_gb": gb(w_bytes), "kv_cache_gb": gb(r["kv_pool"]), "activations_gb": gb(r["act"]),
                "framework_overhead_gb": None if r["total"] is None else
                gb(r["total"] - w_bytes - r["kv_pool"] - r["act"]),
                "total_gb": gb(r["total"])} for r in runs]
    mb, spread = Breakdown.summarize(per_rep)
    null_reasons, notes = {}, [f"KV pool sized to {capacity} tokens ({page}-token pages) + 1 scratch page"]
    if mb["total_gb"] is None:
        null_reasons["memory_breakdown.total_gb"] = "peak RSS not resettable here"
        null_reasons["memory_breakdown.framework_overhead_gb"] = "residual of a total that was not measurable"
    elif mb["framework_overhead_gb"] < 0:
        notes.append("framework_overhead_gb is negative (the residual; peaks do not coincide)")
    held_tokens = runs[-1]["kv_held_peak"] // kvpt
    if dev == "cpu":
        gpu_info = Breakdown.cpu_gpu_block(null_reasons)
    else:
        m = runs[-1]["mem"]
        gpu_info = {"num_gpus": 1, "devices": [{**gpu, "peak_allocated_gb": gb(m["peak_allocated_bytes"]),
                                                "reserved_gb": gb(m["reserved_bytes"])}],
                    "multi_gpu_overhead_gb": None}
        null_reasons["gpu_info.multi_gpu_overhead_gb"] = "the native engine runs on one GPU"
    null_reasons["per_layer"] = "per-layer view is hf-engine only"
    measurements = {
        "model_weights": {"gb": gb(w_bytes), "params_x_bytes": w_bytes,
                          "allocator_bytes": runs[-1]["mem"]["weights_bytes"],
                          "allocator_method": "native engine memory report (parameters + buffers)"},
        "kv_cache": {"measured_gb": mb["kv_cache_gb"], "measured_bytes": runs[-1]["kv_pool"],
                     "cache_class": "pdlib native KVCache (paged pool)", "kv_bytes_per_token": kvpt,
                     "kv_bytes_per_token_theory": theory.kv_bytes_per_token(config, dtype),
                     "held_peak_bytes": runs[-1]["kv_held_peak"], "held_peak_tokens": held_tokens,
                     "formula_bytes_total_sequence": kvpt * B * S, "formula_gb": gb(kvpt * B * S),
                     "method": "KV pool bytes (allocated up front); held = tokens held x bytes/token"},
        "activations": {"gb": mb["activations_gb"],
                        "method": "native engine: peak allocated - weights - KV pool" if dev != "cpu" else
                        "torch.profiler CPU allocator events per decoder pass (peak - live at start)"},
        "framework_overhead": Breakdown.overhead_block(mb, "total - weights - KV pool - activations (residual)"),
        "total": {"method": "torch.cuda max_memory_reserved + non-allocator bytes" if dev != "cpu"
                  else "peak RSS of the run - RSS before loading"}}
    return Breakdown(memory_breakdown=mb, model_info=info, gpu_info=gpu_info, device=dev,
                     measurements=measurements, repeats=Breakdown.repeats_block(per_rep, spread, repeats),
                     per_layer=None, null_reasons=null_reasons, notes=notes,
                     environment=Breakdown.environment_block(engine=eng.describe()))
