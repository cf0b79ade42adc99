"""Configuration of the native engine: one dataclass, validated on construction."""
from __future__ import annotations

from dataclasses import dataclass

from ... import theory

DTYPES = ("bf16", "fp16", "fp32")
#: ``attn_backend`` values; ``auto`` resolves (``ModelRunner``) to triton on CUDA when importable,
#: else flash_attn when importable, else torch (always torch on CPU).
ATTN_BACKENDS = ("auto", "triton", "flash_attn", "torch")
#: Tokens per KV page by attention backend when ``page_size`` is not given (flash-attn's paged
#: kernel needs a multiple of 256; the triton kernels take any page size).
DEFAULT_PAGE_SIZE = {"triton": 16, "flash_attn": 256, "torch": 16}


@dataclass(slots=True)
class NativeConfig:
    """``model``: a local folder, a Hub id, a ``transformers.PretrainedConfig`` or a config dict
    (``model_type`` required). ``weights``: ``"pretrained"`` or ``"random"`` (built from the
    config, seeded). KV capacity: ``kv_capacity_tokens`` or ``kv_memory_bytes`` (one of them;
    neither -> 60% of free GPU memory after loading on CUDA; on CPU 131,072 tokens or 2 GiB,
    whichever is smaller).
    ``page_size``: tokens per KV page (None -> ``DEFAULT_PAGE_SIZE`` of the attention backend).
    ``attn_backend``: ``"auto"`` (on CUDA: pdlib's Triton kernels when triton is importable, else
    flash-attn when importable, else torch SDPA; torch on CPU; ``$PDLIB_ATTN_BACKEND`` replaces it
    when set), ``"triton"`` (CUDA, or CPU in Triton's interpreter), ``"flash_attn"`` or ``"torch"``
    (the reference). ``max_model_len`` bounds one request's tokens
    (None -> min(config max_position_embeddings, capacity)). ``cpu_packed_linear``: on CPU, run
    every linear layer through oneDNN over weights reordered once (``cpu_linear``; vLLM-CPU does
    the same). ``cpu_fused_decode``: on CPU with the torch attention backend, run decode steps of
    Llama-family models through ``cpu_decode.FusedDecode`` (fused QKV / gate-up GEMMs, no
    transformers module stack; prefill keeps transformers' path). ``num_threads``: ``torch.set_num_threads`` at start (None: leave torch's; it is
    process-wide)."""
    model: object
    weights: str = "pretrained"
    dtype: str = "bf16"
    device: str = "cuda"
    kv_capacity_tokens: int | None = None
    kv_memory_bytes: int | None = None
    page_size: int | None = None
    max_model_len: int | None = None
    max_batch: int = 256
    seed: int = 0
    cuda_graphs: bool = True
    attn_backend: str = "auto"
    cpu_packed_linear: bool = True
    cpu_fused_decode: bool = True
    num_threads: int | None = None

    def __post_init__(self):
        try:
            self.dtype = theory.dtype_short(self.dtype)
        except ValueError:
            pass                                   # reported just below, naming the accepted ones
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.weights not in ("pretrained", "random"):
            raise ValueError(f"weights must be 'pretrained' or 'random', got {self.weights!r}")
        if self.kv_capacity_tokens is not None and self.kv_memory_bytes is not None:
            raise ValueError("give kv_capacity_tokens or kv_memory_bytes, not both")
        for name in ("kv_capacity_tokens", "kv_memory_bytes", "page_size", "max_model_len", "num_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}")

    def page_size_for(self, backend: str) -> int:
        """Tokens per KV page: ``page_size`` when given, else the backend's default."""
        return self.page_size or DEFAULT_PAGE_SIZE[backend]
