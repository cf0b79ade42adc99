"""Synthetic workload of the theory: geometric output lengths with termination probability p
(P(L = l) = (1-p)^(l-1) p, l >= 1, mean 1/p) and inputs from ``input_dist``: ``fixed``
(``input_len``), ``uniform`` (``input_min``..``input_max``) or ``geometric`` (mean ``input_len``)."""
from __future__ import annotations

import math

import numpy as np

from pdlib.workload import Request, Skip, Workload

DEFAULT_NUM_REQUESTS = 1000


def load_synthetic(spec) -> Workload:
    p = spec.p
    if p is None or isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 1) or math.isnan(p):
        raise ValueError(f"synthetic workload needs p in (0, 1] (got {p!r})")
    n = spec.num_requests or DEFAULT_NUM_REQUESTS
    rng = np.random.default_rng(0 if spec.seed is None else spec.seed)
    dist = spec.input_dist
    if dist == "fixed":
        if spec.input_len is None:
            raise ValueError("synthetic input_dist='fixed' needs input_len")
        inp = np.full(n, spec.input_len, dtype=np.int64)
    elif dist == "uniform":
        if spec.input_min is None or spec.input_max is None or spec.input_min > spec.input_max:
            raise ValueError("synthetic input_dist='uniform' needs input_min <= input_max")
        inp = rng.integers(spec.input_min, spec.input_max + 1, size=n)
    elif dist == "geometric":
        if spec.input_len is None:
            raise ValueError("synthetic input_dist='geometric' needs input_len (the mean)")
        inp = rng.geometric(1.0 / spec.input_len, size=n)
    else:
        raise ValueError(f"synthetic input_dist must be fixed | uniform | geometric (got {dist!r})")
    out = rng.geometric(p, size=n)
    reqs, skips = [], []
    cap = spec.max_output_tokens
    for i in range(n):
        if spec.max_input_tokens is not None and inp[i] > spec.max_input_tokens:
            skips.append(Skip(i, f"input_len: {int(inp[i])} > max_input_tokens {spec.max_input_tokens}"))
            continue
        trunc = cap is not None and out[i] > cap
        reqs.append(Request(id=str(i), input_len=int(inp[i]), output_len=int(min(out[i], cap) if trunc else out[i]),
                            truncated=bool(trunc)))
    meta = {"dataset": "synthetic", "spec": spec.to_dict(), "source": "generated", "files": [], "tokenizer": None,
            "lengths": f"output ~ Geometric(p={p}) on 1, 2, ...; input {dist}", "p_true": float(p),
            "num_requests": len(reqs), "skipped": len(skips), "truncated": sum(r.truncated for r in reqs)}
    return Workload(f"synthetic:p={p}", reqs, skips, meta)
