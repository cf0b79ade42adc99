"""Theory of exclusive batching (pure functions; imports nothing else of pdlib).

Source: Zhang, Nie, Pang, Ma, Wu, "Threshold-Based Exclusive Batching for
Memory-Bandwidth-Constrained LLM Inference", ICML 2026, arXiv:2606.00516, and the
project's design brief (../shared/DESIGN.md, "Theory"), which lists two errors in
the seed documents that are *not* reproduced here:

* seed 000 prints D(theta) with (1-theta)**2; the correct factor is (1-theta)
  (``D``); the misprint survives only as ``D_seed000_misprint``.
* seed 004 sizes the KV cache of Qwen3-1.7B with hidden_size and 24 layers
  (196,608 B/token); the model has 28 layers, 8 KV heads of 128: 114,688 B/token
  (``kv_bytes_per_token``).

Notation: N slots, refill size k, theta = k/N, termination probability p per
decode step (outputs ~ Geometric(p), mean 1/p), mu_L = mean input length
(tokens), timing model: prefill of T tokens ``alpha_p + beta_p*T``, decode step
with batch j ``alpha_d + beta_d*j`` (seconds).
Every function accepts numpy arrays where it says "vectorized".

Modules: ``timing`` (timing fits, tau, k*, theta*, p), ``memory`` (KV tokens), ``budget``
(seed 004), ``kv`` (KV bytes per token, the dtype table).
"""
from __future__ import annotations

from ._validate import (  # noqa: F401
    N_MAX,
    _check_eps,
    _check_N,
    _check_N_alloc,
    _check_nonneg,
    _check_p,
    _check_pos,
    _check_theta,
    _finite,
    _out,
)
from .budget import L0, LatencyFit, T_latency, b_mem, b_SLA, b_target, eta, fit_T_latency
from .kv import (  # noqa: F401
    CONFIG_INT_MAX,
    DTYPE_BYTES,
    config_int,
    dtype_bytes,
    dtype_name,
    dtype_short,
    kv_bytes_per_token,
    kv_bytes_per_token_seed004,
)
from .memory import (
    E_X0,
    D,
    D_seed000_misprint,
    E_X0_seed000_misprint,
    E_Xmax,
    N_star_clt,
    N_star_prop3,
    drift,
    kappa,
    memory_model,
    nu,
    oom_bound,
    sigma_S,
    variance,
    variance_approx,
)
from .timing import (
    KStar,
    LinearFit,
    TimingModel,
    fit_linear,
    fit_timing,
    k_star,
    p_ema,
    p_ema_inverse_mean,
    p_offline,
    tau,
    theta_star,
    throughput,
)

__all__ = ['CONFIG_INT_MAX', 'DTYPE_BYTES', 'E_X0', 'L0', 'N_MAX', 'D', 'D_seed000_misprint', 'E_X0_seed000_misprint', 'E_Xmax', 'KStar', 'LatencyFit', 'LinearFit', 'N_star_clt', 'N_star_prop3', 'T_latency', 'TimingModel', 'b_SLA', 'b_mem', 'b_target', 'drift', 'dtype_bytes', 'dtype_name', 'dtype_short', 'eta', 'fit_T_latency', 'fit_linear', 'fit_timing', 'k_star', 'kappa', 'kv_bytes_per_token', 'kv_bytes_per_token_seed004', 'memory_model', 'nu', 'oom_bound', 'p_ema', 'p_ema_inverse_mean', 'p_offline', 'sigma_S', 'tau', 'theta_star', 'throughput', 'variance', 'variance_approx']

# Length-aware theory (issue 14): joint (input, output) lengths, any N*p, validity flags.
from .lengths import (  # noqa: E402
    KStarLengths,
    LengthLaw,
    MemoryLengths,
    ThroughputLengths,
    Validity,
    geometric_law,
    k_star_lengths,
    length_law,
    memory_model_lengths,
    paper_validity,
    throughput_lengths,
)

__all__ += ['KStarLengths', 'LengthLaw', 'MemoryLengths', 'ThroughputLengths', 'Validity', 'geometric_law',
            'k_star_lengths', 'length_law', 'memory_model_lengths', 'paper_validity', 'throughput_lengths']
