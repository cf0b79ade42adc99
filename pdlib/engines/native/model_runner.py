"""``ModelRunner``: the model, pdlib's paged KV cache and the CUDA-graph decode buckets, with one
public method per step kind (nano-vllm's model runner).

* ``prefill(rids, prompts)``: one packed varlen prefill of the prompts (no padding; their KV
  pages already allocated in ``cache``) -> the greedy next token per prompt (device tensor);
* ``decode(rids, input_ids, positions)``: one decode step, row i feeding ``input_ids[i]`` at
  ``positions[i]`` (its reserved slot) -> the greedy next token per row; replayed from a CUDA
  graph when one fits.

The runner knows nothing of requests' lengths, policies or termination: the engine
(``engine.NativeEngine``) and the profiler (``profiling``) drive it.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ... import theory
from .attention import AttnContext, set_context
from .config import ATTN_BACKENDS, NativeConfig
from .cpu_decode import FusedDecode, unsupported
from .cpu_linear import GreedyHead, pack_linears
from .graphs import DecodeGraphs
from .kv_cache import KVCache, KVCapacityError
from .memory import memory_report
from .model import load_model

#: backends whose decode kernels read only ``context_lens`` tokens: full-width graphs, captured up front
FULL_WIDTH_BACKENDS = ("triton", "flash_attn")
CPU_DEFAULT_CAPACITY = 131072          # tokens (covers seed 004's 32 x 2048 grid) ...
CPU_DEFAULT_BYTES = 2 << 30             # ... but never more than 2 GiB of host memory


def triton_unavailable(device, dtype=None) -> str | None:
    """Why pdlib's Triton kernels cannot run on ``device`` (None: they can)."""
    try:
        from . import triton_attention
    except ImportError as e:
        return f"triton is not importable ({e})"
    device = torch.device(device)
    if not triton_attention.available(device):
        return f"needs a CUDA device, or TRITON_INTERPRET=1 on CPU (device {device})"
    if device.type == "cuda":
        need = (8, 0) if dtype == torch.bfloat16 else (7, 0)
        cap = torch.cuda.get_device_capability(device)
        if cap < need:
            return f"compute capability {cap} < {need} for {dtype}"
    return None


def resolve_backend(want: str, device, dtype=None) -> str:
    """``attn_backend`` -> the backend used: ``auto`` is torch on CPU; on CUDA triton when
    ``triton_unavailable`` says nothing, else flash_attn when importable, else torch. An explicit
    ``triton`` or ``flash_attn`` that cannot run raises ``ImportError`` saying why.
    ``PDLIB_ATTN_BACKEND`` (one of ``ATTN_BACKENDS``), when set, replaces ``auto`` (a machine-wide
    pin, e.g. torch where the Triton kernels fail: scripts/gpu-check.sh sets it so)."""
    device = torch.device(device)
    if want == "auto" and os.environ.get("PDLIB_ATTN_BACKEND"):
        want = os.environ["PDLIB_ATTN_BACKEND"]
        if want not in ATTN_BACKENDS:
            raise ValueError(f"PDLIB_ATTN_BACKEND must be one of {ATTN_BACKENDS}, got {want!r}")
    if want == "torch" or (want == "auto" and device.type != "cuda"):
        return "torch"
    if want in ("auto", "triton"):
        why = triton_unavailable(device, dtype)
        if why is None:
            return "triton"
        if want == "triton":
            raise ImportError(f"attn_backend='triton': {why}")
    try:
        import flash_attn  # noqa: F401
        return "flash_attn"
    except ImportError:
        if want == "flash_attn":
            raise ImportError("attn_backend='flash_attn' needs the flash-attn package") from None
        return "torch"


class ModelRunner:
    def __init__(self, cfg: NativeConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} requested but CUDA is not available (use device='cpu')")
        self.model, self.hf_config = load_model(cfg.model, weights=cfg.weights, dtype=cfg.dtype,
                                                device=self.device, seed=cfg.seed)
        self.decoder = self.model.get_decoder()
        self.lm_head = self.model.get_output_embeddings()
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        self.greedy_head = None
        self.packed_bytes = 0
        if cfg.cpu_packed_linear and self.device.type == "cpu":
            self.greedy_head = GreedyHead.build(self.lm_head)
            self.packed_bytes = pack_linears(self.decoder) + (self.greedy_head.packed_bytes if self.greedy_head else 0)
        self.backend = self._backend()
        self.fused_decode, self.fused_decode_why_not, self.fused_bytes = None, None, 0
        if cfg.cpu_fused_decode and self.device.type == "cpu":
            why = (f"attention backend {self.backend!r} (needs 'torch')" if self.backend != "torch"
                   else unsupported(self.decoder, self.hf_config))
            if why is None:
                self.fused_decode = FusedDecode(self.decoder, self.hf_config, pack=cfg.cpu_packed_linear)
                self.fused_bytes = self.fused_decode.extra_bytes
            self.fused_decode_why_not = why
        self.cache = self._kv_cache(cfg.page_size_for(self.backend))
        max_pos = getattr(self.hf_config, "max_position_embeddings", None) or self.cache.capacity_tokens
        self.max_model_len = min(cfg.max_model_len or max_pos, self.cache.capacity_tokens)
        self.max_pages = self.cache.pages_needed(self.max_model_len)
        self.graphs = None
        if cfg.cuda_graphs and self.device.type == "cuda":
            full = self.backend in FULL_WIDTH_BACKENDS
            self.graphs = DecodeGraphs(self._forward_decode, max_batch=cfg.max_batch, max_pages=self.max_pages,
                                       scratch_page=self.cache.scratch_page, page_size=self.cache.page_size,
                                       device=self.device, page_buckets=not full)
            if full:
                self.graphs.capture_all()

    def _backend(self) -> str:
        return resolve_backend(self.cfg.attn_backend, self.device, self.model.dtype)

    def _kv_cache(self, page: int) -> KVCache:
        cfg, c = self.cfg, self.hf_config
        heads = c.num_attention_heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        bpt = theory.kv_bytes_per_token(c, theory.dtype_name(cfg.dtype))
        capacity = cfg.kv_capacity_tokens
        if capacity is None:
            if cfg.kv_memory_bytes is not None:
                budget = cfg.kv_memory_bytes
            elif self.device.type == "cuda":
                budget = int(0.6 * torch.cuda.mem_get_info(self.device)[0])
            else:
                budget = min(CPU_DEFAULT_CAPACITY * bpt, CPU_DEFAULT_BYTES)
            capacity = KVCache.tokens_for_bytes(budget, bpt, page)
            if capacity < page:
                raise KVCapacityError(f"KV memory budget of {budget} bytes holds less than one page "
                                      f"({page} tokens x {bpt} bytes per token)")
        return KVCache(num_layers=c.num_hidden_layers, kv_heads=kv_heads, head_dim=head_dim,
                       dtype=self.model.dtype, device=self.device, capacity_tokens=capacity, page_size=page)

    def to_device(self, a, dtype=torch.long) -> torch.Tensor:
        """A host array as a device tensor (pinned, non-blocking on CUDA)."""
        t = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def fits(self, tokens: int, requests: int = 1) -> bool:
        """Whether ``requests`` requests of ``tokens`` tokens each fit in the KV pool and max_model_len."""
        return tokens <= self.max_model_len and self.cache.pages_needed(tokens) * requests <= self.cache.num_pages

    # ------------------------------------------------------------------ one step each
    @torch.inference_mode()
    def prefill(self, rids, prompts) -> torch.Tensor:
        """One packed prefill of the given prompts (KV pages already allocated); next token per prompt."""
        lens = [len(p) for p in prompts]
        ids = self.to_device(np.concatenate([np.asarray(p, dtype=np.int64) for p in prompts]))
        pos = self.to_device(np.concatenate([np.arange(n) for n in lens]))
        slots = self.to_device(np.concatenate([self.cache.slots(r, 0, n) for r, n in zip(rids, lens)]))
        cu = np.concatenate([[0], np.cumsum(lens)])
        set_context(AttnContext(self.cache, True, slots, self.backend, seq_lens=lens,
                                cu_seqlens=self.to_device(cu, torch.int32), max_seqlen=max(lens)))
        h = self.decoder(input_ids=ids[None], position_ids=pos[None], use_cache=False).last_hidden_state[0]
        set_context(None)
        last = self.to_device(cu[1:] - 1)
        return self.greedy(h[last])

    def greedy(self, h: torch.Tensor) -> torch.Tensor:
        """The greedy next token of each row of hidden states ``h`` [rows, hidden]."""
        if self.greedy_head is not None:
            return self.greedy_head(h)
        return self.lm_head(h).argmax(-1)

    def _forward_decode(self, input_ids, positions, slot_mapping, block_table, context_lens):
        if self.fused_decode is not None:
            return self.greedy(self.fused_decode(input_ids, positions, self.cache, slot_mapping, block_table,
                                                 context_lens))
        set_context(AttnContext(self.cache, False, slot_mapping, self.backend, block_table=block_table,
                                context_lens=context_lens))
        h = self.decoder(input_ids=input_ids[:, None], position_ids=positions[:, None],
                         use_cache=False).last_hidden_state[:, -1]
        set_context(None)
        return self.greedy(h)

    @torch.inference_mode()
    def decode(self, rids, input_ids: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
        """One decode step: row i feeds ``input_ids[i]`` at ``positions[i]`` (its reserved slot)."""
        slots = np.concatenate([self.cache.slots(r, p, p + 1) for r, p in zip(rids, positions)])
        bt = self.cache.block_table(rids)
        B = len(rids)
        if self.graphs is not None and self.graphs.bucket(B) is not None and bt.shape[1] <= self.max_pages:
            return self.graphs.run(B, input_ids, positions, slots, bt, positions + 1)
        return self._forward_decode(input_ids, self.to_device(positions), self.to_device(slots),
                                    self.to_device(bt, torch.int32), self.to_device(positions + 1, torch.int32))

    # ------------------------------------------------------------------ info
    def reset(self) -> None:
        """Free every KV page (and restart the CUDA peak-memory statistics)."""
        self.cache.reset()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def describe(self) -> dict:
        return {"device": str(self.device), "attn_backend": self.backend, "cuda_graphs": self.graphs is not None,
                "cpu_packed_linear": self.packed_bytes > 0, "cpu_fused_decode": self.fused_decode is not None,
                **({"cpu_fused_decode_why_not": self.fused_decode_why_not} if self.fused_decode_why_not else {}),
                "torch_threads": torch.get_num_threads(),
                "kv_capacity_tokens": self.cache.capacity_tokens, "page_size": self.cache.page_size,
                "kv_bytes_per_token": self.cache.bytes_per_token, "max_model_len": self.max_model_len}

    def memory(self) -> dict:
        return dict(memory_report(self.model, self.cache, self.device), packed_linear_bytes=self.packed_bytes,
                    fused_decode_bytes=self.fused_bytes)
