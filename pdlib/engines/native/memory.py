"""Memory accounting of the native engine: what the memory-breakdown work needs.

Bytes: model weights (parameters + buffers), the KV pool (allocated up front), KV bytes
actually held (tokens held x bytes per token, no page rounding) and the page-rounded
figure; on CUDA the allocator's view: peak allocated minus weights and KV pool (activations
and CUDA-graph pool), and reserved minus allocated (allocator overhead). On CPU the
allocator figures are ``None`` with a reason (PyTorch keeps no CPU allocator statistics).
"""
from __future__ import annotations

import torch


def weights_bytes(model) -> int:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def memory_report(model, cache, device) -> dict:
    device = torch.device(device)
    w = weights_bytes(model)
    rep = {"weights_bytes": w, "kv_pool_bytes": cache.pool_bytes,
           "kv_capacity_tokens": cache.capacity_tokens, "kv_bytes_per_token": cache.bytes_per_token,
           "kv_tokens_held": cache.tokens_held, "kv_bytes_held": cache.bytes_held,
           "kv_page_bytes_held": cache.page_tokens_held * cache.bytes_per_token}
    if device.type == "cuda":
        alloc = torch.cuda.memory_allocated(device)
        peak = torch.cuda.max_memory_allocated(device)
        reserved = torch.cuda.memory_reserved(device)
        rep.update(allocated_bytes=alloc, peak_allocated_bytes=peak, reserved_bytes=reserved,
                   activation_peak_bytes=peak - w - cache.pool_bytes,
                   allocator_overhead_bytes=reserved - alloc)
    else:
        why = "PyTorch keeps no allocator statistics on CPU"
        rep.update(activation_peak_bytes=None, activation_peak_reason=why,
                   allocator_overhead_bytes=None, allocator_overhead_reason=why)
    return rep
