"""Linear layers through oneDNN with the weights reordered once (CPU only), as vLLM-CPU does.

``F.linear`` on CPU hands MKL the plain ``[out, in]`` weight every call; for decode-sized
inputs (a few to a few hundred rows) most of the time then goes to re-blocking the weight
(benchmarks/native_vs_vllm_step.py, docs/benchmarks.md: on the tiny Qwen3 the tied
151,936 x 128 LM head was ~75 % of a batch-32 decode step). ``pack_linears`` gives every
``nn.Linear`` of a model a forward through ``torch.ops.mkldnn._linear_pointwise`` over a
weight reordered by ``torch.ops.mkldnn._reorder_linear_weight`` (the ops PyTorch's inductor
uses for CPU linears; vLLM-CPU does the same through its own ``onednn_mm``). The originals
stay (tied embeddings read them); the packed copies' bytes are returned for the memory
report. Each packed layer is checked against ``F.linear`` on a probe input and left as it was
when the op is missing or disagrees.

``GreedyHead`` is the greedy token of the LM head without the full logits: the vocabulary in
chunks of ``HEAD_CHUNK`` rows (each packed); per chunk only the row maxima (``amax``, a
vectorized reduction), and the index only for the rows whose maximum that chunk raises, so a
chunk's logits are reduced while still in cache instead of writing and re-reading the whole
``[batch, vocab]`` array (19 MB at batch 32 x 151,936) through ``argmax`` (whose CPU kernel is
~15x slower than ``amax`` there). Measured 2026-12-02 on the 2-core Intel Xeon, one thread,
batch 32 x 128 -> 151,936: packed head + ``argmax`` 25.8 ms, chunks of 65,536 with ``max(-1)``
17.3 ms, this 15.8 ms (the GEMM alone 14.6 ms); chunks of 4,096-32,768 within +-1 ms of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: row count the reorder is tuned for (a hint only: any row count runs)
BATCH_HINT = 32
#: vocabulary rows per chunk of ``GreedyHead`` (32 x 16384 fp32 logits: 2 MB, the chunk stays in cache)
HEAD_CHUNK = 16384


def _packable(weight: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dim() == 2 and weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


def packed_forward(layer: nn.Linear):
    """A forward for ``layer`` over its weight reordered once, or None when that cannot run here."""
    return packed_linear(layer.weight.detach(), None if layer.bias is None else layer.bias.detach())


def packed_linear(w: torch.Tensor, bias: torch.Tensor | None = None):
    """``x -> x @ w.T + bias`` over ``w`` [out, in] reordered once for oneDNN (``packed_bytes``: the
    copy's size), checked against ``F.linear`` on a probe; None when that cannot run here."""
    if not _packable(w):
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, BATCH_HINT)

        def forward(x, _p=packed, _b=bias):
            return torch.ops.mkldnn._linear_pointwise(x, _p, _b, "none", [], "")

        probe = torch.linspace(-1, 1, 3 * w.shape[1], dtype=w.dtype).view(3, -1)
        tol = 1e-4 if w.dtype == torch.float32 else 2e-2
        with torch.inference_mode():
            if not torch.allclose(forward(probe).float(), F.linear(probe, w, bias).float(), rtol=tol, atol=tol):
                return None
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
    forward.packed_bytes = packed.numel() * packed.element_size()
    return forward


def pack_linears(model: nn.Module) -> int:
    """Give every CPU ``nn.Linear`` of ``model`` a packed forward; returns the packed copies' bytes."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and "forward" not in module.__dict__:
            f = packed_forward(module)
            if f is not None:
                module.forward = f
                total += f.packed_bytes
    return total


class GreedyHead:
    """``argmax(x @ W.T, -1)`` of an LM head over packed vocabulary chunks (first index on ties,
    as ``torch.argmax``). ``build`` returns None when the head cannot be packed here."""

    def __init__(self, chunks, packed_bytes: int):
        self.chunks, self.packed_bytes = chunks, packed_bytes

    @classmethod
    def build(cls, head: nn.Linear, chunk: int = HEAD_CHUNK) -> GreedyHead | None:
        w = head.weight.detach()
        chunks, total = [], 0
        for off in range(0, w.shape[0], chunk):
            f = packed_linear(w[off:off + chunk].contiguous(),
                              None if head.bias is None else head.bias.detach()[off:off + chunk].contiguous())
            if f is None:
                return None
            chunks.append((off, f))
            total += f.packed_bytes
        return cls(chunks, total)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Per chunk only the row maxima (``amax``: a vectorized reduction, ~1/7 of ``max(-1)``'s
        # time, which also tracks indices); the index is taken only for the rows whose maximum
        # this chunk raises -- every row in the first chunk, then a few (a running record: about
        # ln(chunks) + 0.58 per row for logits in random order).
        best_v = best_i = None
        for off, f in self.chunks:
            logits = f(x)
            m = logits.amax(-1)
            if best_v is None:
                best_v, best_i = m, logits.max(-1).indices + off
                continue
            up = m > best_v                      # strict: an earlier chunk keeps a tie
            if not bool(up.any()):
                continue
            rows = up.nonzero().squeeze(1)
            best_v = torch.where(up, m, best_v)
            best_i = best_i.index_copy(0, rows, logits.index_select(0, rows).max(-1).indices + off)
        return best_i
