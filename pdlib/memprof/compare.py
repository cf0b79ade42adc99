"""Calculator vs measurement: per-component error and what to change in the calculator.

The default calculator (``theory_estimates``) uses the profile's ``model_info`` only:

* weights      = num_parameters x bytes per element of the dtype
                 (coefficient ``bytes_per_param``);
* KV cache     = ``pdlib.theory.kv_bytes_per_token`` x batch x total_sequence_length
                 (coefficient ``kv_bytes_per_token``);
* activations  = the larger of the prefill and the decode pass (coefficient
                 ``act_bytes_per_token_elem`` = c_act = 2*intermediate + 4*hidden elements
                 per token: MLP gate/up outputs plus a few hidden-size temporaries),
                 prefill = B*P*c_act*e + B*V*4 (fp32 logits of the last position),
                 decode  = B*c_act*e + B*V*4 + (KV bytes/token / layers)*B*(S-1) (the dynamic
                 cache's torch.cat copy of one layer's K/V);
* overhead     = ``overhead_fraction`` (10%) x (weights + KV + activations).
Errors are ``(calculated - measured) / measured`` in percent (positive: the calculator
overestimates). A component within +-5% keeps its coefficient; otherwise the recommendation
names the coefficient and the value that would have reproduced the measurement.
"""
from __future__ import annotations

from pdlib import theory

from .result import COMPONENTS as _MEASURED
from .result import GB

TOLERANCE_PCT = 5.0
OVERHEAD_FRACTION = 0.10
COMPONENTS = _MEASURED[:-1]         # the calculated ones; total_gb is their sum
_CALC_FLAG = {"model_weights_gb": "calc_weights", "kv_cache_gb": "calc_kv",
              "activations_gb": "calc_activations", "framework_overhead_gb": "calc_overhead"}


def _need(info, key, path="model_info"):
    v = info.get(key)
    if v is None:
        raise ValueError(f"profile: {path}.{key} is missing or null; the theory calculator needs it")
    return v


def theory_estimates(profile: dict) -> dict:
    """The calculator's GB per component and the coefficients it used (see module docstring)."""
    mi = profile.get("model_info")
    if not isinstance(mi, dict):
        raise ValueError("profile: no model_info object")  # noqa: TRY004 (the CLI reports ValueError)
    e = theory.dtype_bytes(_need(mi, "dtype"))
    n, B = int(_need(mi, "num_parameters")), int(_need(mi, "batch_size"))
    P, S = int(_need(mi, "prompt_length")), int(_need(mi, "total_sequence_length"))
    L, H = int(_need(mi, "num_hidden_layers")), int(_need(mi, "hidden_size"))
    I, V = int(_need(mi, "intermediate_size")), int(_need(mi, "vocab_size"))
    kvpt = (profile.get("measurements", {}).get("kv_cache", {}) or {}).get("kv_bytes_per_token")
    if kvpt is None:
        raise ValueError("profile: measurements.kv_cache.kv_bytes_per_token is null "
                         f"({profile.get('null_reasons', {}).get('measurements.kv_cache.kv_bytes_per_token')}); "
                         "pass --calc-kv")
    c_act = 2 * I + 4 * H
    w = n * e
    kv = kvpt * B * S
    prefill = B * P * c_act * e + B * V * 4
    decode = B * c_act * e + B * V * 4 + (kvpt // L) * B * (S - 1)
    act = max(prefill, decode)
    over = OVERHEAD_FRACTION * (w + kv + act)
    return {"values_gb": {"model_weights_gb": w / GB, "kv_cache_gb": kv / GB, "activations_gb": act / GB,
                          "framework_overhead_gb": over / GB},
            "coefficients": {"bytes_per_param": e, "kv_bytes_per_token": kvpt, "act_bytes_per_token_elem": c_act,
                             "overhead_fraction": OVERHEAD_FRACTION},
            "terms": {"num_parameters": n, "batch_size": B, "prompt_length": P, "total_sequence_length": S,
                      "activation_pass": "prefill" if prefill >= decode else "decode",
                      "activation_tokens": B * P if prefill >= decode else B, "bytes_per_element": e}}


def _recommend(comp, meas, calc, est, external):
    if meas is None:
        return "no measurement (see the profile's null_reasons); nothing to calibrate"
    if calc is None:
        return "no calculated value"
    if meas <= 0 and comp == "framework_overhead_gb":
        return (f"measured overhead is {meas:.4g} GB (<= 0: the residual is negative, the other components' "
                "peaks overlap); set the overhead allowance to 0")
    if meas == 0:
        return "measured 0 GB; drop this term"
    err = (calc - meas) / meas * 100
    if abs(err) <= TOLERANCE_PCT:
        return f"keep (within +-{TOLERANCE_PCT:g}%)"
    f = meas / calc if calc else None
    if external or est is None:
        return f"scale the calculator's {comp[:-3]} by {f:.4g} (x measured/calculated)"
    c, t = est["coefficients"], est["terms"]
    if comp == "model_weights_gb":
        bpp = meas * GB / t["num_parameters"]
        return (f"bytes_per_param: {c['bytes_per_param']} -> {bpp:.4g} (x{f:.4g}); check the dtype and "
                "untied/extra weights")
    if comp == "kv_cache_gb":
        kv = meas * GB / (t["batch_size"] * t["total_sequence_length"])
        return (f"kv_bytes_per_token: {c['kv_bytes_per_token']} -> {kv:.6g} B/token (x{f:.4g}); a factor "
                "well above 1 means preallocated or padded cache slots (static cache, pages)")
    if comp == "activations_gb":
        ca = c["act_bytes_per_token_elem"] * f
        return (f"act_bytes_per_token_elem (c_act, {t['activation_pass']} pass): {c['act_bytes_per_token_elem']} "
                f"-> {ca:.4g} elements/token (x{f:.4g})")
    if comp == "framework_overhead_gb":
        base = est["values_gb"]
        rest = base["model_weights_gb"] + base["kv_cache_gb"] + base["activations_gb"]
        return (f"overhead_fraction: {c['overhead_fraction']:g} -> {meas / rest:.4g} of weights+KV+activations "
                f"(x{f:.4g}); on GPU a fixed term (CUDA context) fits better than a fraction")
    raise ValueError(comp)


def compare_estimates(profile: dict, calc_weights=None, calc_kv=None, calc_activations=None,
                      calc_overhead=None) -> dict:
    """Measured vs calculated per component. A ``calc_*`` value (GB) replaces the theory
    calculator for that component (an external calculator's figure)."""
    mb = profile.get("memory_breakdown")
    if not isinstance(mb, dict):
        raise ValueError("profile: no memory_breakdown object")  # noqa: TRY004
    given = {"model_weights_gb": calc_weights, "kv_cache_gb": calc_kv, "activations_gb": calc_activations,
             "framework_overhead_gb": calc_overhead}
    for k, v in given.items():
        if v is not None and v < 0:
            raise ValueError(f"--{_CALC_FLAG[k].replace('_', '-')} must be >= 0 GB, got {v}")
    est = theory_estimates(profile) if any(v is None for v in given.values()) else None
    rows = []
    for comp in COMPONENTS:
        if comp not in mb:
            raise ValueError(f"profile: memory_breakdown.{comp} is missing")
        meas = mb[comp]
        external = given[comp] is not None
        calc = given[comp] if external else est["values_gb"][comp]
        err = None if meas in (None, 0) or calc is None else (calc - meas) / meas * 100
        rows.append({"component": comp, "measured_gb": meas, "calculated_gb": calc, "error_pct": err,
                     "abs_error_gb": None if meas is None else calc - meas,
                     "calculator": "given" if external else "pdlib.theory",
                     "recommendation": _recommend(comp, meas, calc, est, external)})
    tm = mb.get("total_gb")
    tc = sum(r["calculated_gb"] for r in rows)
    rows.append({"component": "total_gb", "measured_gb": tm, "calculated_gb": tc,
                 "error_pct": None if not tm else (tc - tm) / tm * 100,
                 "abs_error_gb": None if tm is None else tc - tm, "calculator": "sum",
                 "recommendation": "follows from the components"})
    return {"rows": rows, "calculator": est, "tolerance_pct": TOLERANCE_PCT,
            "model": profile.get("model_info", {}).get("name"), "device": profile.get("device")}
