"""Seed 004's GPU memory/latency budget, composed from ``pdlib.theory``.

For a GPU (``pdlib.hardware``) and a model (``pdlib.models``):

* ``M_max``   — the card's memory (bytes, marketed GiB; see ``pdlib.hardware``);
* ``M_model`` — weight bytes (num_parameters x dtype bytes) plus ``overhead_bytes``, a fixed
  non-KV reserve: CUDA context (~0.3-0.5 GiB with PyTorch), cuBLAS/attention workspaces,
  activations of the largest step, allocator slack. Default 1 GiB — a round figure, not a
  measurement; pass the figure measured by ``pdlib.memprof`` for your engine.
  (Seed 004 instead adds ~18% to the weights: 1.7e9 x 2 B = 3.4 GB -> "4.0 GB".)
* ``kv_bytes_per_token`` — ``2 * layers * kv_heads * head_dim * bytes`` from the config;
* ``eta = (M_max - M_model)/kv``, ``L0 = 0.1*eta``, ``b_mem = floor((eta - L0)/mu)`` for the
  mean and the p95 request size mu (tokens = prompt + output);
* ``b_SLA`` — largest batch with ``T(b, L) <= sla_s``, ``T(b, L) = a + b_*L*(1 + g*(b-1)/b)``
  (``theory.T_latency``) at L = the request size; ``b_target = min(b_mem, b_SLA, B_MAX)``.

``SEED004_LATENCY`` (a = 0.010 s, b_ = 0.0002 s/token, g = 0.3) are seed 004's fitted
coefficients for Qwen3-1.7B fp16 under HF ``generate`` on its card, end-to-end per batch —
defaults documented as the seed's, not measured here; pass a ``theory.fit_T_latency`` result
(or a dict a/b_/g) fitted on your own batch x length grid. Note that T(b, L) is bounded in b
(it tends to a + b_*L*(1+g)), so b_SLA is either 0 or B_MAX unless the SLA falls between
T(1, L) and that limit.

Seed 004's figures (for the side-by-side): "RTX 4080 12GB", M_max 12.0 GB, M_model 4.0 GB,
KV 196,608 B/token (2 x 24 layers x hidden 2048 x 2 B — no GQA, wrong layer count) which it
writes as 1.875e-4 GB (196,608 B is 0.1875 MiB; MiB/1000 is not GB), eta = 42,667 tokens,
L0 = 4,267, b_mem = 76 for a 500-token request and 38 for 1,000; D_SLA = 1.0 s, B_MAX = 128.
"""
from __future__ import annotations

from . import theory
from .hardware import GiB, get_gpu, gpu_names
from .models import get_model, model_names

SEED004_LATENCY = {"a": 0.010, "b_": 0.0002, "g": 0.3}
SEED004_SLA_S = 1.0
SEED004_B_MAX = 128
SEED004_MEAN_TOKENS = 500        # 200 prompt + 300 output (seed's example)
SEED004_P95_TOKENS = 1000        # seed's "p95 request (1000 tokens)"
SEED004_M_MAX_GB = 12.0
SEED004_M_MODEL_GB = 4.0         # 1.7e9 params x 2 B = 3.4 GB, + ~18%
SEED004_KV_GB_PER_TOKEN = 1.875e-4
DEFAULT_OVERHEAD_BYTES = 1 * GiB


def _latency(latency) -> tuple[dict, str]:
    if latency is None:
        return dict(SEED004_LATENCY), "seed 004 defaults (not measured here)"
    if isinstance(latency, theory.LatencyFit):
        return {"a": latency.a, "b_": latency.b_, "g": latency.g}, f"fit (R^2={latency.r2:.3f})"
    d = dict(latency)
    missing = {"a", "b_", "g"} - set(d)
    if missing:
        raise ValueError(f"latency must have keys a, b_, g; missing {sorted(missing)}")
    return {k: float(d[k]) for k in ("a", "b_", "g")}, str(d.get("source", "given"))


def compose(M_max, M_model, kv_per_token, mean_tokens, p95_tokens=None, *, sla_s=SEED004_SLA_S,
            B_MAX=SEED004_B_MAX, latency=None) -> dict:
    """The seed-004 chain from raw numbers (any consistent memory unit for M_max, M_model and
    kv_per_token): eta, L0, b_mem, b_SLA, b_target for the mean (and p95) request size."""
    lat, lat_src = _latency(latency)
    eta = float(theory.eta(M_max, M_model, kv_per_token))
    out = {"eta": eta, "L0": float(theory.L0(eta))}
    sizes = {"": mean_tokens} if p95_tokens is None else {"": mean_tokens, "_p95": p95_tokens}
    for suffix, mu in sizes.items():
        bm = int(theory.b_mem(eta, mu))
        bs = theory.b_SLA(sla_s, mu, lat["a"], lat["b_"], lat["g"], B_MAX=B_MAX)
        out[f"b_mem{suffix}"] = bm
        out[f"T_at_b_mem{suffix}_s"] = float(theory.T_latency(max(bm, 1), mu, **lat))
        out[f"b_SLA{suffix}"] = bs
        out[f"b_target{suffix}"] = int(theory.b_target(bm, bs, B_MAX))
    out.update({"sla_s": float(sla_s), "B_MAX": int(B_MAX), "latency_a_s": lat["a"],
                "latency_b_s_per_token": lat["b_"], "latency_g": lat["g"], "latency_source": lat_src})
    return out


def gpu_budget(gpu="rtx4080", model="qwen3-1.7b", *, dtype=None, mean_tokens=SEED004_MEAN_TOKENS,
               p95_tokens=SEED004_P95_TOKENS, overhead_bytes=DEFAULT_OVERHEAD_BYTES,
               kv_dtype=None, sla_s=SEED004_SLA_S, B_MAX=SEED004_B_MAX, latency=None) -> dict:
    """Seed 004's budget for a GPU x model from the tables (or a ``GPU`` / ``ModelSpec``), in
    bytes. ``dtype`` defaults to the model's published dtype; ``kv_dtype`` to ``dtype``."""
    g = get_gpu(gpu)
    m = get_model(model)
    dtype = dtype or m.dtype
    theory.dtype_bytes(dtype)
    overhead = round(float(theory._check_nonneg("overhead_bytes", overhead_bytes)))
    weights = m.weights_bytes(dtype)
    kv = m.kv_bytes_per_token(kv_dtype or dtype)
    M_model = weights + overhead
    res = {"gpu": g.key, "gpu_name": g.name, "hypothetical_gpu": g.hypothetical, "model": m.name,
           "dtype": str(dtype), "kv_dtype": str(kv_dtype or dtype), "num_parameters": m.num_parameters,
           "M_max_bytes": g.memory_bytes, "weights_bytes": weights, "overhead_bytes": overhead,
           "M_model_bytes": M_model, "kv_bytes_per_token": kv,
           "mean_tokens": float(mean_tokens), "p95_tokens": None if p95_tokens is None else float(p95_tokens)}
    if M_model > g.memory_bytes:
        raise ValueError(f"{m.name} in {dtype} needs {M_model / GiB:.2f} GiB (weights + overhead) "
                         f"but {g.key} has {g.memory_gib:.0f} GiB: M_model exceeds M_max")
    res.update(compose(g.memory_bytes, M_model, kv, mean_tokens, p95_tokens, sla_s=sla_s,
                       B_MAX=B_MAX, latency=latency))
    # bandwidth floor of one decode step at small batch: every weight byte read once
    res["decode_floor_ms"] = 1e3 * weights / g.bandwidth_Bps
    if g.measured_copy_Bps:
        res["decode_floor_measured_copy_ms"] = 1e3 * weights / g.measured_copy_Bps
    return res


def seed004_stated(mean_tokens=SEED004_MEAN_TOKENS, p95_tokens=SEED004_P95_TOKENS, *, sla_s=SEED004_SLA_S,
                   B_MAX=SEED004_B_MAX, latency=None) -> dict:
    """Seed 004's case exactly as printed (its units: GB, KV 1.875e-4 GB/token)."""
    res = {"case": "seed 004 as stated", "gpu": "rtx4080-12gb-hypothetical",
           "gpu_name": get_gpu("rtx4080-12gb-hypothetical").name, "hypothetical_gpu": True,
           "model": "qwen3-1.7b", "dtype": "float16", "kv_dtype": "float16", "num_parameters": 1.7e9,
           "M_max_bytes": SEED004_M_MAX_GB * 1e9, "weights_bytes": 3.4e9,
           "overhead_bytes": (SEED004_M_MODEL_GB - 3.4) * 1e9, "M_model_bytes": SEED004_M_MODEL_GB * 1e9,
           "kv_bytes_per_token": theory.kv_bytes_per_token_seed004(2048, 24, 2),
           "kv_bytes_per_token_as_used": SEED004_KV_GB_PER_TOKEN * 1e9,
           "mean_tokens": float(mean_tokens), "p95_tokens": float(p95_tokens)}
    res.update(compose(SEED004_M_MAX_GB, SEED004_M_MODEL_GB, SEED004_KV_GB_PER_TOKEN, mean_tokens,
                       p95_tokens, sla_s=sla_s, B_MAX=B_MAX, latency=latency))
    res["decode_floor_ms"] = 1e3 * 3.4e9 / get_gpu("rtx4080-12gb-hypothetical").bandwidth_Bps
    res["note"] = ("KV from hidden_size and 24 layers (196,608 B) instead of 28 layers x 8 KV heads x "
                   "128 (114,688 B), then 0.1875 MiB written as 1.875e-4 GB; no 12 GB desktop RTX 4080")
    return res


def seed004_comparison(mean_tokens=SEED004_MEAN_TOKENS, p95_tokens=SEED004_P95_TOKENS, *,
                       dtype="float16", overhead_bytes=DEFAULT_OVERHEAD_BYTES, sla_s=SEED004_SLA_S,
                       B_MAX=SEED004_B_MAX, latency=None, as_frame=True):
    """Seed 004's stated case beside the corrected ones (Qwen3-1.7B, 114,688 B/token in 16-bit):
    the 16 GB desktop RTX 4080, the 12 GB RTX 4080 Laptop, and the seed's hypothetical 12 GB
    card with the corrected model numbers. One row per case (DataFrame, or list of dicts)."""
    rows = [seed004_stated(mean_tokens, p95_tokens, sla_s=sla_s, B_MAX=B_MAX, latency=latency)]
    for case, gpu in (("corrected: RTX 4080 desktop 16 GB", "rtx4080"),
                      ("corrected: RTX 4080 Laptop 12 GB", "rtx4080-laptop"),
                      ("corrected model on the seed's hypothetical 12 GB card", "rtx4080-12gb-hypothetical")):
        r = {"case": case}
        r.update(gpu_budget(gpu, "qwen3-1.7b", dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                            overhead_bytes=overhead_bytes, sla_s=sla_s, B_MAX=B_MAX, latency=latency))
        rows.append(r)
    if not as_frame:
        return rows
    import pandas as pd
    return pd.DataFrame(rows).set_index("case")


def budget_table(gpus=None, models=None, *, dtype=None, mean_tokens=SEED004_MEAN_TOKENS,
                 p95_tokens=SEED004_P95_TOKENS, overhead_bytes=DEFAULT_OVERHEAD_BYTES, sla_s=SEED004_SLA_S,
                 B_MAX=SEED004_B_MAX, latency=None):
    """Every GPU x model (defaults: the whole tables) as a DataFrame; a model that does not fit
    on a GPU gets a row with ``fits=False`` and the reason instead of numbers."""
    import pandas as pd
    rows = []
    for g in (gpus or gpu_names()):
        for m in (models or model_names()):
            try:
                r = gpu_budget(g, m, dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                               overhead_bytes=overhead_bytes, sla_s=sla_s, B_MAX=B_MAX, latency=latency)
                r["fits"], r["reason"] = True, ""
            except ValueError as e:
                if "exceeds M_max" not in str(e):
                    raise
                r = {"gpu": get_gpu(g).key, "model": get_model(m).name, "fits": False, "reason": str(e)}
            rows.append(r)
    return pd.DataFrame(rows)



# --------------------------------------------------------------------------- display tables
# What notebook 04 and its widgets show: the chain in GB with the request sizes, sla in ms.

SHOW = ["gpu", "model", "dtype", "M_max_GB", "M_model_GB", "kv_bytes_per_token", "eta", "L0", "b_mem", "b_mem_p95",
        "b_SLA", "b_SLA_p95", "b_target", "b_target_p95"]


def _gb(df):
    df = df.copy()
    if "M_max_bytes" in df:
        df["M_max_GB"] = df["M_max_bytes"] / 1e9
        df["M_model_GB"] = df["M_model_bytes"] / 1e9
    return df


def budget_rows(gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                sla_ms=1000.0, B_MAX=128):
    """One GPU x model: seed 004's budget (eta, L0, b_mem, b_SLA, b_target for the mean and p95
    request) as a one-row table; a model that does not fit gives a row saying so. The budget
    explorer's callback (``pdlib.report.widgets``)."""
    import pandas as pd
    try:
        r = gpu_budget(gpu, model, dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                       sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
        df = _gb(pd.DataFrame([r]))
        return df[[c for c in SHOW if c in df]].set_index(["gpu", "model"]).round(3)
    except ValueError as e:
        return pd.DataFrame([{"gpu": gpu, "model": model, "error": str(e)}]).set_index(["gpu", "model"])


def seed_vs_corrected(gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                      sla_ms=1000.0, B_MAX=128):
    """Seed 004 as stated, the corrected RTX 4080 cases, and the chosen GPU x model."""
    import pandas as pd
    df = seed004_comparison(mean_tokens, p95_tokens, sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
    sel = gpu_budget(gpu, model, dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                     sla_s=sla_ms / 1e3, B_MAX=int(B_MAX))
    df = pd.concat([df, pd.DataFrame([sel], index=pd.Index([f"chosen: {gpu} x {model} ({dtype})"], name="case"))])
    df = _gb(df)
    return df[[c for c in SHOW if c in df]]


def all_pairs(dtype="fp16", mean_tokens=500, p95_tokens=1000, sla_ms=1000.0, B_MAX=128):
    """Every GPU x model of the built-in tables."""
    df = _gb(budget_table(dtype=dtype, mean_tokens=mean_tokens, p95_tokens=p95_tokens,
                          sla_s=sla_ms / 1e3, B_MAX=int(B_MAX)))
    cols = [c for c in SHOW + ["fits"] if c in df]
    return df[cols].set_index(["gpu", "model"]).round(3)
