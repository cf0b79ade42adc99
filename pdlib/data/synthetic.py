"""Synthetic workload of the theory: geometric output lengths with termination probability p
(P(L = l) = (1-p)^(l-1) p, l >= 1, mean 1/p) and inputs from ``input_dist``: ``fixed``
(``input_len``), ``uniform`` (``input_min``..``input_max``) or ``geometric`` (mean ``input_len``)."""
from __future__ import annotations

import numpy as np

from pdlib.workload import MAX_TOKENS, MAX_TOKENS_TEXT, Request, Skip, Workload, first_skips

from .errors import DataError

DEFAULT_NUM_REQUESTS = 1000


def load_synthetic(spec) -> Workload:
    p = spec.p      # type and range checked by DatasetSpec.validate
    if p is None:
        raise ValueError("synthetic workload needs p=, the termination probability (allowed 1e-09..1)")
    n = spec.num_requests or DEFAULT_NUM_REQUESTS
    rng = np.random.default_rng(0 if spec.seed is None else spec.seed)
    dist = spec.input_dist
    if dist == "fixed":
        if spec.input_len is None:
            raise ValueError("synthetic input_dist='fixed' needs input_len= (allowed 1..10^9)")
        inp = np.full(n, spec.input_len, dtype=np.int64)
    elif dist == "uniform":
        if spec.input_min is None or spec.input_max is None or spec.input_min > spec.input_max:
            raise ValueError(f"synthetic input_dist='uniform' needs input_min= <= input_max= "
                             f"(got {spec.input_min!r}, {spec.input_max!r}; allowed 1..10^9)")
        inp = rng.integers(spec.input_min, spec.input_max + 1, size=n)
    elif dist == "geometric":
        if spec.input_len is None:
            raise ValueError("synthetic input_dist='geometric' needs input_len=, the mean (allowed 1..10^9)")
        inp = rng.geometric(1.0 / spec.input_len, size=n)
    else:
        raise ValueError(f"synthetic input_dist={dist!r}: allowed fixed | uniform | geometric")
    out = rng.geometric(p, size=n)
    reqs, skips = [], []
    cap = spec.max_output_tokens
    too_big = (inp > MAX_TOKENS) | (out > MAX_TOKENS)    # draws with p or a mean near the bound
    for i in range(n):
        if spec.max_input_tokens is not None and inp[i] > spec.max_input_tokens:
            skips.append(Skip(i, f"input_len: above max_input_tokens ({int(inp[i])} > {spec.max_input_tokens})"))
            continue
        if too_big[i]:
            k, x = ("input_len", inp[i]) if inp[i] > MAX_TOKENS else ("output_len", out[i])
            skips.append(Skip(i, f"{k}: too large ({int(x)}; allowed 1..{MAX_TOKENS_TEXT})"))
            continue
        trunc = cap is not None and out[i] > cap
        reqs.append(Request(id=str(i), input_len=int(inp[i]), output_len=int(min(out[i], cap) if trunc else out[i]),
                            truncated=bool(trunc)))
    if not reqs:
        raise DataError(f"no request left of {n} drawn ({first_skips(skips)})", field="max_input_tokens")
    meta = {"dataset": "synthetic", "spec": spec.to_dict(), "source": "generated", "files": [], "tokenizer": None,
            "lengths": f"output ~ Geometric(p={p}) on 1, 2, ...; input {dist}", "p_true": float(p),
            "num_requests": len(reqs), "skipped": len(skips), "truncated": sum(r.truncated for r in reqs)}
    return Workload(f"synthetic:p={p}", reqs, skips, meta)
