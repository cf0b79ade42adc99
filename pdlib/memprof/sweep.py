"""Notebook 05: the memory breakdown over a batch x sequence-length grid, as tables.

``sweep`` profiles every (batch, sequence length) cell (prompt = half the length, the rest
generated), writes one JSON per cell into ``out_dir`` atomically and reuses a cell's JSON
when it exists with the same settings (an interrupted sweep resumes). The frames feed
``pdlib.report.breakdown``'s figures.
"""
from __future__ import annotations

import json
from pathlib import Path

from pdlib.models import TINY_QWEN3
from pdlib.records import atomic_write_json

from .compare import compare_estimates
from .profile import profile_breakdown
from .result import COMPONENTS

TINY_QWEN3_CONFIG = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", **TINY_QWEN3,
                     "rms_norm_eps": 1e-6, "rope_theta": 1000000, "torch_dtype": "float32",
                     "use_sliding_window": False}


def tiny_model_dir(path) -> Path:
    """A folder with the config of a 2-layer Qwen3 (random weights are built from it)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    atomic_write_json(p / "config.json", TINY_QWEN3_CONFIG)
    return p


def sweep(model, batch_sizes, seq_lens, out_dir, *, dtype="float32", device=None, repeats=2, weights="random",
          engine="hf", progress=True, cpu_threads=1) -> list[dict]:
    """Profiles for every (batch, total sequence length); prompt_length = seq_len // 2.

    ``cpu_threads``: torch intra-op threads during the sweep (restored after). Tiny models gain
    nothing from threads, and on a shared, busy CPU two spinning threads made one generate call
    10-30x slower than one thread; None leaves torch's setting. Memory figures do not depend on it."""
    import torch
    old = torch.get_num_threads()
    if cpu_threads is not None:
        torch.set_num_threads(int(cpu_threads))
    try:
        return _sweep(model, batch_sizes, seq_lens, out_dir, dtype, device, repeats, weights, engine, progress)
    finally:
        torch.set_num_threads(old)


def _sweep(model, batch_sizes, seq_lens, out_dir, dtype, device, repeats, weights, engine, progress):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profiles = []
    for S in seq_lens:
        if int(S) < 2:
            raise ValueError(f"seq_lens: each length must be >= 2 (prompt + 1 generated), got {S}")
        P = int(S) // 2
        for B in batch_sizes:
            settings = {"model": str(model), "dtype": dtype, "batch_size": int(B), "prompt_length": P,
                        "max_tokens": int(S) - P, "repeats": int(repeats), "weights": weights, "engine": engine,
                        "device": device}
            f = out / f"breakdown_b{B}_s{S}.json"
            if f.exists():
                old = json.loads(f.read_text())
                if old.get("settings") == settings:
                    profiles.append(old)
                    continue
            if progress:
                print(f"profiling batch {B}, sequence {S} ...", flush=True)
            prof = profile_breakdown(str(model), weights=weights, max_tokens=int(S) - P, batch_size=int(B),
                                     dtype=dtype, engine=engine, device=device, repeats=int(repeats),
                                     prompt_length=P)
            prof.settings = settings
            prof.write(f)
            profiles.append(prof.to_json())
    return profiles


def breakdown_frame(profiles):
    """One row per profile: batch, sequence length and the mean GB of each component (+ std)."""
    import pandas as pd
    rows = []
    for p in profiles:
        mi, sp = p["model_info"], p["repeats"]["spread"]
        r = {"config": f"B={mi['batch_size']} S={mi['total_sequence_length']}", "batch_size": mi["batch_size"],
             "seq_len": mi["total_sequence_length"]}
        for c in COMPONENTS:
            r[c] = p["memory_breakdown"][c]
            r[c.replace("_gb", "_std_gb")] = sp[c]["std"] if sp.get(c) else None
        rows.append(r)
    return pd.DataFrame(rows)


def compare_frame(profiles):
    """Measured vs the theory calculator, one row per (profile, component)."""
    import pandas as pd
    rows = []
    for p in profiles:
        mi = p["model_info"]
        for r in compare_estimates(p)["rows"]:
            rows.append(dict(config=f"B={mi['batch_size']} S={mi['total_sequence_length']}", **r))
    return pd.DataFrame(rows)


def kv_growth_frame(profiles):
    """KV bytes measured (cache storages) and by the formula, per (batch, sequence length)."""
    import pandas as pd
    rows = []
    for p in profiles:
        mi, kv = p["model_info"], p["measurements"]["kv_cache"]
        rows.append({"batch_size": mi["batch_size"], "seq_len": mi["total_sequence_length"],
                     "tokens": mi["batch_size"] * mi["total_sequence_length"],
                     "cached_tokens": kv.get("cached_tokens"), "measured_bytes": kv["measured_bytes"],
                     "formula_bytes_total_sequence": kv["formula_bytes_total_sequence"],
                     "formula_bytes_cached_tokens": kv.get("formula_bytes_cached_tokens")})
    return pd.DataFrame(rows).sort_values(["batch_size", "seq_len"]).reset_index(drop=True)
