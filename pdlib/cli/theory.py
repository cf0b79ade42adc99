"""``pdlib kstar``, ``pdlib memory``, ``pdlib budget``: the theory's numbers from the command line.

Every option is checked against a documented range before anything is computed (bounds in
``pdlib.cli.output``: N <= 10^6, token counts <= 10^7, times <= 10^6 s, p >= 10^-12); a bad
value is a one-line error naming the option (exit status 2), and a result that would still
be NaN/inf is refused the same way instead of printed.

``--lengths FILE.csv`` (``kstar``, ``memory``; read by ``pdlib.cli.lengths``) takes p = 1/mean
output and the input mean/variance from paired token counts and adds the length-aware model of
``pdlib.theory.lengths`` beside the paper's numbers (``*_lengths`` keys). Every result carries the
validity flags of the formulas it quotes (``validity``: the paper's; ``validity_lengths``: the
length-aware model's), each ``{name, holds, value, threshold, why}``; the table prints them last
as ``assume:NAME  yes|no  value V vs threshold T`` rows."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..theory import N_MAX
from .lengths import check_theory_bounds, lengths_or_options
from .output import (
    P_ARG,
    POS_SECONDS_ARG,
    RANGE_CAUSE,
    SECONDS_ARG,
    SECONDS_MAX,
    TOKENS_MAX,
    CLIError,
    check_finite,
    check_number,
    emit,
    float_arg,
    int_arg,
    quiet_numerics,
    validity_list,
)

LENGTHS_HELP = ("paired token counts (header input_tokens,output_tokens; `pdlib data lengths` writes one): "
                "p = 1/mean output and the input mean/variance come from it")
B_MAX_MAX = 10**7      # theory.b_SLA scans b = 1..B_MAX
TOKENS_ARG = float_arg(0.0, TOKENS_MAX)
POS_TOKENS_ARG = float_arg(0.0, TOKENS_MAX, lo_open=True)
VAR_TOKENS_ARG = float_arg(0.0, float(TOKENS_MAX) ** 2)     # a variance of token counts


def _dtype_arg(s: str) -> str:
    from ..theory import DTYPE_BYTES, dtype_name
    try:
        dtype_name(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(sorted(DTYPE_BYTES))}, got {s!r}") from None
    return s


def register(sub) -> None:
    p = sub.add_parser("kstar", help="optimal refill size k* and the large-N ratio theta*")
    p.add_argument("--N", type=int_arg(1, N_MAX), required=True, help=f"slots (max batch), 1..{N_MAX}")
    p.add_argument("--p", type=P_ARG, help="termination probability per decode step, [1e-12, 1] (required "
                   "unless --lengths)")
    p.add_argument("--alpha-p", type=SECONDS_ARG, required=True, help="prefill fixed cost (s), [0, 1e6]")
    p.add_argument("--alpha-d", type=POS_SECONDS_ARG, required=True, help="decode step fixed cost (s), (0, 1e6]")
    p.add_argument("--beta-d", type=SECONDS_ARG, required=True,
                   help="decode cost per request in the batch (s), [0, 1e6]")
    p.add_argument("--beta-p", type=SECONDS_ARG, default=0.0,
                   help="prefill cost per token (s), [0, 1e6]; only the throughput uses it")
    p.add_argument("--mean-input", type=TOKENS_ARG, default=None,
                   help="mean input length mu_L (tokens), [0, 1e7] (default 0)")
    p.add_argument("--lengths", metavar="FILE.csv", help=LENGTHS_HELP + "; adds the length-aware k* "
                   "(N in 2..512, (N-1) x max output <= 1e6)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_kstar)

    p = sub.add_parser("memory", help="KV-token memory of exclusive batching: E[X0], kappa, OOM bound, N*")
    p.add_argument("--N", type=int_arg(2, N_MAX), required=True, help=f"slots, 2..{N_MAX}")
    p.add_argument("--k", type=int_arg(1, N_MAX), required=True, help="refill size, 1..N-1 (theta = k/N)")
    p.add_argument("--p", type=P_ARG, help="termination probability per decode step, [1e-12, 1] (required "
                   "unless --lengths)")
    p.add_argument("--mean-input", type=POS_TOKENS_ARG, help="mu_L (tokens), (0, 1e7] (required unless --lengths)")
    p.add_argument("--var-input", type=VAR_TOKENS_ARG, default=None,
                   help="Var of input length (tokens^2), [0, 1e14] (default 0)")
    p.add_argument("--lengths", metavar="FILE.csv", help=LENGTHS_HELP + "; adds the length-aware E[X0], "
                   "E[Xmax], E[sup Y] (N <= 4096)")
    p.add_argument("--capacity-tokens", type=float_arg(0.0, 1e12), default=None,
                   help="KV capacity C (tokens) for N*, [0, 1e12]")
    p.add_argument("--eps", type=float_arg(0.0, 1.0, lo_open=True, hi_open=True), default=0.01,
                   help="OOM tolerance for N*, (0, 1)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_memory)

    p = sub.add_parser("budget", help="seed 004's GPU budget (eta, L0, b_mem, b_SLA, b_target)")
    p.add_argument("--gpu", default="rtx4080", help="GPU key, or 'list'")
    p.add_argument("--model", default="qwen3-1.7b",
                   help="built-in name, config.json path/folder, Hugging Face id, or 'list'")
    p.add_argument("--dtype", type=_dtype_arg, default=None,
                   help="weights/KV dtype (default: the model's; e.g. fp16, bf16, fp8)")
    p.add_argument("--kv-dtype", type=_dtype_arg, default=None, help="KV cache dtype if different from --dtype")
    p.add_argument("--mean-tokens", type=float_arg(1.0, TOKENS_MAX), default=500,
                   help="mean request size mu (prompt+output tokens), [1, 1e7]")
    p.add_argument("--p95-tokens", type=float_arg(1.0, TOKENS_MAX), default=1000,
                   help="p95 request size (tokens), [1, 1e7]")
    p.add_argument("--overhead-gb", type=float_arg(0.0, 1e6), default=1.0,
                   help="non-KV reserve beside the weights (GiB), [0, 1e6]")
    p.add_argument("--sla-s", type=POS_SECONDS_ARG, default=1.0, help="latency SLA for b_SLA (s), (0, 1e6]")
    p.add_argument("--b-max", type=int_arg(1, B_MAX_MAX), default=128, help=f"B_MAX, 1..{B_MAX_MAX}")
    p.add_argument("--latency", nargs=3, type=float_arg(-SECONDS_MAX, SECONDS_MAX), metavar=("A", "B", "G"),
                   default=None, help="T(b,L) = A + B*L*(1+G*(b-1)/b) coefficients, A and B in [0, 1e6] s, "
                                      "G in [-1, 1e6] (default: seed 004's 0.010 0.0002 0.3)")
    p.add_argument("--latency-json", metavar="FILE", default=None,
                   help="take a, b_, g from a `pdlib profile --latency-grid` output (latency_grid.fit)")
    p.add_argument("--seed004", action="store_true",
                   help="print seed 004's stated case beside the corrected RTX 4080 cases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_budget)


@quiet_numerics
def run_kstar(args) -> int:
    from .. import theory as T
    lens = lengths_or_options(args, ("--p", "--mean-input"))
    if lens is None:
        if args.p is None:
            raise CLIError("--p is required (or --lengths FILE.csv, whose p = 1/mean output)")
        p, mu = args.p, 0.0 if args.mean_input is None else args.mean_input
    else:
        if args.N < 2:
            raise CLIError(f"--N must be >= 2 with --lengths (the length-aware k* scans k = 1..N-1), got {args.N}")
        check_theory_bounds(lens, args.N, kstar=True)
        p, mu = lens.p, lens.mu_L
    r = T.k_star(args.N, p, args.alpha_p, args.alpha_d, args.beta_d, args.beta_p, mu)
    ts = float(T.theta_star(p, args.alpha_p, args.alpha_d))
    out = {"N": args.N, "p": p, "alpha_p": args.alpha_p, "beta_p": args.beta_p,
           "alpha_d": args.alpha_d, "beta_d": args.beta_d, "mean_input": mu,
           "k_star": r.k, "theta_k_star": r.theta, "theta_star": ts,
           "theta_star_exact": float(T.theta_star(p, args.alpha_p, args.alpha_d, exact=True)),
           "k_from_theta_star": max(1, min(args.N, round(ts * args.N))),
           "fallback_used": r.fallback_used, "throughput_at_k_star": r.throughput}
    if r.fallback_used:
        out["throughput_at_N"] = float(T.throughput(args.N, args.N, p, args.alpha_p, args.beta_p,
                                                    args.alpha_d, args.beta_d, mu))
        out["note"] = (f"no k in 1..{args.N - 1} satisfies the k* condition; fell back to N//5 as the "
                       "authors' code does (the cycle model itself is best at k = N)")
    if lens is None:
        out["validity"] = validity_list(T.paper_validity(args.N, p, mu))
    else:
        out.update(_kstar_lengths(args, lens, r.k))
    emit(check_finite(out, RANGE_CAUSE), args.json)
    return 0


def _kstar_lengths(args, lens, k_paper: int) -> dict:
    """The length-aware k* of ``lens`` and the paper's k* judged by the length-aware throughput."""
    from ..theory import lengths as TL
    try:
        kl = TL.k_star_lengths(args.N, args.alpha_p, args.beta_p, args.alpha_d, args.beta_d,
                               lens.inputs, lens.outputs)
    except ValueError as e:
        raise CLIError(f"--lengths {lens.path!r}: {e}") from None
    at_paper = float(kl.curve[k_paper - 1]) if k_paper < args.N else None
    out = {**lens.describe(), "k_star_lengths": kl.k, "throughput_at_k_star_lengths": kl.throughput,
           "throughput_lengths_at_k_star": at_paper,
           "k_star_throughput_ratio_lengths": None if at_paper is None else at_paper / kl.throughput}
    if at_paper is None:
        out["note_lengths"] = f"the paper's k* = N = {args.N}: outside the length-aware model's k = 1..N-1"
    out["validity"] = validity_list(kl.paper_validity)
    out["validity_lengths"] = validity_list(kl.validity)
    return out


@quiet_numerics
def run_memory(args) -> int:
    from .. import theory as T
    N = args.N
    if not args.k < N:
        raise CLIError(f"--k must be an integer in 1..N-1 = 1..{N - 1} for --N {N} (theta = k/N < 1), got {args.k}")
    lens = lengths_or_options(args, ("--p", "--mean-input", "--var-input"))
    if lens is None:
        for opt in ("p", "mean_input"):
            if getattr(args, opt) is None:
                raise CLIError(f"--{opt.replace('_', '-')} is required (or --lengths FILE.csv)")
        p, mu, var = args.p, args.mean_input, 0.0 if args.var_input is None else args.var_input
        if p >= 1 and var == 0:
            raise CLIError("--p 1 with --var-input 0: every request ends in its prefill, the KV variance is 0 "
                           "and the OOM bound is undefined; use --p < 1 or --var-input > 0")
    else:
        check_theory_bounds(lens, N)
        p, mu, var = lens.p, lens.mu_L, lens.var_L
    if not math.isfinite(T.kappa(p, mu)):
        raise CLIError(f"kappa = 1/(p^2*mu_L) overflows for --p {p:g} and --mean-input {mu:g}; raise either")
    model = T.memory_model(N, args.k, p, mu, var)
    theta = model["theta"]
    out = {"N": N, "k": args.k, "p": p, "mean_input": mu, "var_input": var, **model}
    if args.capacity_tokens is not None:
        C, eps = args.capacity_tokens, args.eps
        out.update({"capacity_tokens": C, "eps": eps,
                    "N_star_prop3": int(T.N_star_prop3(C, theta, p, mu, eps)),
                    "N_star_clt": int(T.N_star_clt(C, theta, p, mu, eps, var))})
    if lens is None:
        out["validity"] = validity_list(T.paper_validity(N, p, mu))
    else:
        out.update(_memory_lengths(N, args.k, lens))
    emit(check_finite(out, RANGE_CAUSE), args.json)
    return 0


def _memory_lengths(N: int, k: int, lens) -> dict:
    from ..theory import lengths as TL
    try:
        m = TL.memory_model_lengths(N, k, lens.inputs, lens.outputs, seed=0)
    except ValueError as e:
        raise CLIError(f"--lengths {lens.path!r}: {e}") from None
    return {**lens.describe(), "E_X0_lengths": m.E_X0, "E_Xmax_lengths": m.E_Xmax, "E_supY_lengths": m.E_supY,
            "se_supY_lengths": m.se_supY, "validity": validity_list(m.paper_validity),
            "validity_lengths": validity_list(m.validity)}


def _latency_coefs(d: dict, where: str) -> dict:
    """a, b_ in [0, 1e6] s and g in [-1, 1e6] (g >= -1 keeps T(b, L) >= a), else CLIError naming ``where``."""
    return {"a": check_number(f"{where} a", d["a"], 0.0, SECONDS_MAX),
            "b_": check_number(f"{where} b_", d["b_"], 0.0, SECONDS_MAX),
            "g": check_number(f"{where} g", d["g"], -1.0, SECONDS_MAX)}


def _latency_arg(args):
    if args.latency and args.latency_json:
        raise CLIError("give --latency or --latency-json, not both")
    if args.latency:
        a, b, g = args.latency
        return {**_latency_coefs({"a": a, "b_": b, "g": g}, "--latency"), "source": "--latency"}
    if args.latency_json is not None:
        where = f"--latency-json {args.latency_json!r}"
        try:
            with open(args.latency_json) as f:
                doc = json.load(f)
        except json.JSONDecodeError as e:
            raise CLIError(f"{where}: not valid JSON ({e})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"{where}: cannot read the file ({getattr(e, 'strerror', None) or e})") from None
        grid = doc.get("latency_grid", {}) if isinstance(doc, dict) else None
        fit = grid.get("fit", doc) if isinstance(grid, dict) else None
        if not isinstance(fit, dict) or not {"a", "b_", "g"} <= set(fit):
            raise CLIError(f"{where}: no latency fit (expected latency_grid.fit with a, b_, g)")
        return {**_latency_coefs(fit, where), "source": f"fit from {args.latency_json}"}
    return None


def _table(df, as_json: bool) -> None:
    if as_json:
        rows = json.loads(df.to_json(orient="records"))
        emit({"rows": rows}, True)
    else:
        print(df.to_string(index=False))


_ARCH_FIELDS = ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size",
                "intermediate_size", "vocab_size")


def _model(name: str, dtype):
    """``models.get_model(name)`` with errors that name ``--model``; a config file is checked
    first (architecture fields integers in 1..10^7, a known dtype)."""
    from .. import theory as T
    from ..models import get_model, load_config_path
    where = f"--model {name!r}"
    try:
        if name.strip() and Path(name).expanduser().exists():
            c, f = load_config_path(name)
            where = f"--model {str(f)!r}"
            tc = c.get("text_config", c) if "num_hidden_layers" not in c else c
            if not isinstance(tc, dict):
                raise CLIError(f"{where}: text_config must be a JSON object")
            for key in _ARCH_FIELDS:
                if tc.get(key) is not None:
                    T.config_int(tc, key, "config")
            if dtype is None:   # the dtype models.get_model takes from the config
                T.dtype_name(str(c.get("torch_dtype") or c.get("dtype") or "float16"))
        return get_model(name)
    except (ValueError, OSError) as e:
        raise CLIError(f"{where}: {getattr(e, 'strerror', None) or e}") from None
    except (KeyError, TypeError, AttributeError, ArithmeticError) as e:   # a malformed config.json
        raise CLIError(f"{where}: malformed model config ({type(e).__name__}: {e})") from None


@quiet_numerics
def run_budget(args) -> int:
    from .. import budget as B
    from ..hardware import GiB, get_gpu, gpu_table
    from ..models import model_table
    if args.gpu == "list":
        _table(gpu_table(), args.json)
        return 0
    if args.model == "list":
        _table(model_table(), args.json)
        return 0
    kw = {"mean_tokens": args.mean_tokens, "p95_tokens": args.p95_tokens,
          "overhead_bytes": args.overhead_gb * GiB, "sla_s": args.sla_s, "B_MAX": args.b_max,
          "latency": _latency_arg(args)}
    if args.seed004:
        rows = B.seed004_comparison(dtype=args.dtype or "float16", as_frame=False, **kw)
        for r in rows:
            check_finite(r, RANGE_CAUSE)
        if args.json:
            emit({"cases": rows}, True)
        else:
            import pandas as pd
            keep = ["gpu", "M_max_bytes", "M_model_bytes", "kv_bytes_per_token", "eta", "L0", "b_mem",
                    "b_mem_p95", "b_SLA", "b_target", "b_target_p95"]
            print(pd.DataFrame(rows).set_index("case")[keep].T.to_string())
        return 0
    try:
        gpu = get_gpu(args.gpu)
    except ValueError as e:
        raise CLIError(f"--gpu: {e}") from None
    model = _model(args.model, args.dtype)
    try:
        res = B.gpu_budget(gpu, model, dtype=args.dtype, kv_dtype=args.kv_dtype, **kw)
    except ValueError as e:
        hint = " (lower --overhead-gb, or choose a larger --gpu or a smaller --dtype)" if "M_max" in str(e) else ""
        raise CLIError(f"--model {args.model!r} on --gpu {args.gpu!r}: {e}{hint}") from None
    emit(check_finite(res, RANGE_CAUSE), args.json)
    return 0
