"""``pdlib kstar``, ``pdlib memory``, ``pdlib budget``: the theory's numbers from the command line."""
from __future__ import annotations

import json
import math

from .output import CLIError, emit


def register(sub) -> None:
    p = sub.add_parser("kstar", help="optimal refill size k* and the large-N ratio theta*")
    p.add_argument("--N", type=int, required=True, help="slots (max batch)")
    p.add_argument("--p", type=float, required=True, help="termination probability per decode step")
    p.add_argument("--alpha-p", type=float, required=True, help="prefill fixed cost (s)")
    p.add_argument("--alpha-d", type=float, required=True, help="decode step fixed cost (s)")
    p.add_argument("--beta-d", type=float, required=True, help="decode cost per request in the batch (s)")
    p.add_argument("--beta-p", type=float, default=0.0, help="prefill cost per token (s); only the throughput uses it")
    p.add_argument("--mean-input", type=float, default=0.0, help="mean input length mu_L (tokens)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_kstar)

    p = sub.add_parser("memory", help="KV-token memory of exclusive batching: E[X0], kappa, OOM bound, N*")
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--k", type=int, required=True, help="refill size (theta = k/N)")
    p.add_argument("--p", type=float, required=True)
    p.add_argument("--mean-input", type=float, required=True, help="mu_L (tokens)")
    p.add_argument("--var-input", type=float, default=0.0, help="Var of input length (tokens^2)")
    p.add_argument("--capacity-tokens", type=float, default=None, help="KV capacity C (tokens) for N*")
    p.add_argument("--eps", type=float, default=0.01, help="OOM tolerance for N*")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_memory)

    p = sub.add_parser("budget", help="seed 004's GPU budget (eta, L0, b_mem, b_SLA, b_target)")
    p.add_argument("--gpu", default="rtx4080", help="GPU key, or 'list'")
    p.add_argument("--model", default="qwen3-1.7b",
                   help="built-in name, config.json path/folder, Hugging Face id, or 'list'")
    p.add_argument("--dtype", default=None, help="weights/KV dtype (default: the model's; e.g. fp16, bf16, fp8)")
    p.add_argument("--kv-dtype", default=None, help="KV cache dtype if different from --dtype")
    p.add_argument("--mean-tokens", type=float, default=500, help="mean request size mu (prompt+output tokens)")
    p.add_argument("--p95-tokens", type=float, default=1000, help="p95 request size (tokens)")
    p.add_argument("--overhead-gb", type=float, default=1.0, help="non-KV reserve beside the weights (GiB)")
    p.add_argument("--sla-s", type=float, default=1.0, help="latency SLA for b_SLA (s)")
    p.add_argument("--b-max", type=int, default=128, help="B_MAX")
    p.add_argument("--latency", nargs=3, type=float, metavar=("A", "B", "G"), default=None,
                   help="T(b,L) = A + B*L*(1+G*(b-1)/b) coefficients (default: seed 004's 0.010 0.0002 0.3)")
    p.add_argument("--latency-json", metavar="FILE", default=None,
                   help="take a, b_, g from a `pdlib profile --latency-grid` output (latency_grid.fit)")
    p.add_argument("--seed004", action="store_true",
                   help="print seed 004's stated case beside the corrected RTX 4080 cases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_budget)


def run_kstar(args) -> int:
    from .. import theory as T
    r = T.k_star(args.N, args.p, args.alpha_p, args.alpha_d, args.beta_d, args.beta_p, args.mean_input)
    ts = float(T.theta_star(args.p, args.alpha_p, args.alpha_d))
    out = {"N": args.N, "p": args.p, "alpha_p": args.alpha_p, "beta_p": args.beta_p,
           "alpha_d": args.alpha_d, "beta_d": args.beta_d, "mean_input": args.mean_input,
           "k_star": r.k, "theta_k_star": r.theta, "theta_star": ts,
           "theta_star_exact": float(T.theta_star(args.p, args.alpha_p, args.alpha_d, exact=True)),
           "k_from_theta_star": max(1, min(args.N, round(ts * args.N))),
           "fallback_used": r.fallback_used, "throughput_at_k_star": r.throughput}
    if r.fallback_used:
        out["throughput_at_N"] = float(T.throughput(args.N, args.N, args.p, args.alpha_p, args.beta_p,
                                                    args.alpha_d, args.beta_d, args.mean_input))
        out["note"] = (f"no k in 1..{args.N - 1} satisfies the k* condition; fell back to N//5 as the "
                       "authors' code does (the cycle model itself is best at k = N)")
    emit(out, args.json)
    return 0


def run_memory(args) -> int:
    from .. import theory as T
    N, p, mu, var = args.N, args.p, args.mean_input, args.var_input
    try:
        model = T.memory_model(N, args.k, p, mu, var)
    except ValueError as e:
        raise CLIError(str(e).replace("k must", "--k must")) from None
    theta = model["theta"]
    out = {"N": N, "k": args.k, "p": p, "mean_input": mu, "var_input": var, **model}
    if args.capacity_tokens is not None:
        C, eps = args.capacity_tokens, args.eps
        out.update({"capacity_tokens": C, "eps": eps,
                    "N_star_prop3": int(T.N_star_prop3(C, theta, p, mu, eps)),
                    "N_star_clt": int(T.N_star_clt(C, theta, p, mu, eps, var))})
    emit(out, args.json)
    return 0


def _latency_arg(args):
    if args.latency and args.latency_json:
        raise CLIError("give --latency or --latency-json, not both")
    if args.latency:
        a, b, g = args.latency
        return {"a": a, "b_": b, "g": g, "source": "--latency"}
    if args.latency_json:
        try:
            with open(args.latency_json) as f:
                doc = json.load(f)
        except json.JSONDecodeError as e:
            raise CLIError(f"{args.latency_json}: not valid JSON ({e})") from None
        fit = doc.get("latency_grid", {}).get("fit", doc) if isinstance(doc, dict) else None
        if not isinstance(fit, dict) or not {"a", "b_", "g"} <= set(fit):
            raise CLIError(f"{args.latency_json}: no latency fit (expected latency_grid.fit with a, b_, g)")
        return {"a": fit["a"], "b_": fit["b_"], "g": fit["g"], "source": f"fit from {args.latency_json}"}
    return None


def _table(df, as_json: bool) -> None:
    if as_json:
        rows = json.loads(df.to_json(orient="records"))
        emit({"rows": rows}, True)
    else:
        print(df.to_string(index=False))


def run_budget(args) -> int:
    from .. import budget as B
    from ..hardware import GiB, gpu_table
    from ..models import model_table
    if args.gpu == "list":
        _table(gpu_table(), args.json)
        return 0
    if args.model == "list":
        _table(model_table(), args.json)
        return 0
    if args.overhead_gb < 0 or math.isnan(args.overhead_gb):
        raise CLIError(f"--overhead-gb must be >= 0, got {args.overhead_gb}")
    kw = {"mean_tokens": args.mean_tokens, "p95_tokens": args.p95_tokens,
          "overhead_bytes": args.overhead_gb * GiB, "sla_s": args.sla_s, "B_MAX": args.b_max,
          "latency": _latency_arg(args)}
    if args.seed004:
        rows = B.seed004_comparison(dtype=args.dtype or "float16", as_frame=False, **kw)
        if args.json:
            emit({"cases": rows}, True)
        else:
            import pandas as pd
            keep = ["gpu", "M_max_bytes", "M_model_bytes", "kv_bytes_per_token", "eta", "L0", "b_mem",
                    "b_mem_p95", "b_SLA", "b_target", "b_target_p95"]
            print(pd.DataFrame(rows).set_index("case")[keep].T.to_string())
        return 0
    emit(B.gpu_budget(args.gpu, args.model, dtype=args.dtype, kv_dtype=args.kv_dtype, **kw), args.json)
    return 0
