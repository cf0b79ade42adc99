"""``pdlib simulate``: run the exclusive-batching simulator and compare with the theory.

Outputs are Geometric(p); inputs are the constant ``--mean-input`` (or Gamma with
``--var-input``); or, with ``--lengths FILE.csv``, (input, output) pairs drawn together from the
file (p and the input mean come from it) and the length-aware theory beside the paper's.
The queue never empties; the run stops after ``--steps`` steps.
``--dynamic``: online k* with p estimated by ``--p-estimator`` (default ``inverse_mean``,
p = 1/EMA(L); ``paper``: the paper's p <- a/L + (1-a)p, biased); both estimators' runs
(same seed) are reported.
Timing defaults (seconds) are the balanced regime of ``params/engines/sim.yaml``:
alpha_p=0.02, beta_p=2e-5 (per prompt token), alpha_d=0.008, beta_d=1e-4 (per request).
Ranges (checked before anything is allocated): N <= 10^6, --steps <= 10^7, token counts
<= 10^7, times <= 10^6 s, p >= 10^-12. A run that keeps no steady-state memory cycle (too
few steps for this p, or --warmup dropping them all) is an error, not a table of NaN.
"""

from __future__ import annotations

import argparse
import math
import time

from ..policy import DEFAULT_ESTIMATOR, ESTIMATORS
from ..theory import N_MAX
from .lengths import check_theory_bounds, lengths_or_options
from .output import (
    P_ARG,
    POS_SECONDS_ARG,
    RANGE_CAUSE,
    SECONDS_ARG,
    STEPS_MAX,
    TOKENS_MAX,
    CLIError,
    check_finite,
    choice_arg,
    emit,
    float_arg,
    int_arg,
    quiet_numerics,
    validity_list,
)

_STEPS = int_arg(0, STEPS_MAX)
_VAR = float_arg(0.0, float(TOKENS_MAX) ** 2)


def _var_arg(s: str) -> float:
    """0 (constant inputs) or a Gamma variance in [1e-6, 1e14] (below, the Gamma shape overflows)."""
    try:
        v = _VAR(s)
        if v == 0 or v >= 1e-6:
            return v
    except argparse.ArgumentTypeError:
        pass
    raise argparse.ArgumentTypeError(f"must be 0 or a number in [1e-06, 1e+14], got {s!r}")


def _warmup_arg(s: str):
    if s == "auto":
        return s
    try:
        return _STEPS(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 0 and <= {STEPS_MAX}, got {s!r}") from None


_T = {"alpha_p": 0.02, "beta_p": 2e-5, "alpha_d": 0.008, "beta_d": 1e-4}


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate exclusive batching; memory cycles and throughput vs theory",
        description=__doc__,
    )
    p.add_argument("--N", type=int_arg(2, N_MAX), required=True, help=f"batch slots, 2..{N_MAX}")
    p.add_argument("--k", type=int_arg(1, N_MAX), help="refill size, 1..N-1 (fixed policy; default: k* from the theory)")
    p.add_argument(
        "--p", type=P_ARG,
        help="termination probability per step (outputs ~ Geometric(p)), [1e-12, 1] (required unless --lengths)",
    )
    p.add_argument("--mean-input", type=float_arg(1.0, TOKENS_MAX),
                   help="mean input length mu_L (tokens; inputs are whole tokens >= 1), [1, 1e7] "
                        "(required unless --lengths)")
    p.add_argument(
        "--var-input", type=_var_arg, default=None,
        help="input length variance (Gamma, rounded): 0 (constant, the default) or [1e-6, 1e14]",
    )
    p.add_argument("--lengths", metavar="FILE.csv",
                   help="draw (input, output) pairs together from this file (header input_tokens,output_tokens; "
                        "`pdlib data lengths` writes one) instead of --p/--mean-input/--var-input; N <= 4096")
    p.add_argument("--steps", type=int_arg(1, STEPS_MAX), default=200_000,
                   help=f"steps to simulate (default 200000), 1..{STEPS_MAX}")
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0, help="0..2^63-1")
    for name, v in _T.items():
        kind = POS_SECONDS_ARG if name == "alpha_d" else SECONDS_ARG
        rng = "(0, 1e6]" if name == "alpha_d" else "[0, 1e6]"
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=v, help=f"seconds (default {v}), {rng}")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic k*: online EMA p, k* every --update-interval completions",
    )
    p.add_argument("--p0", type=P_ARG, help="dynamic: initial p (default --p), [1e-12, 1]")
    p.add_argument("--ema-alpha", type=float_arg(0.0, 1.0, lo_open=True), default=0.05, help="(0, 1]")
    p.add_argument("--update-interval", type=int_arg(1, STEPS_MAX), default=32, help=f"1..{STEPS_MAX}")
    p.add_argument("--p-estimator", type=choice_arg(ESTIMATORS), default=DEFAULT_ESTIMATOR,
                   help="dynamic: online p, 'inverse_mean' (p = 1/EMA of output lengths, unbiased; the default) "
                        "or 'paper' (p <- a/L + (1-a)p, the paper's rule: tracks E[1/L], biased high)")
    p.add_argument("--warmup", type=_warmup_arg, default="auto",
                   help=f"cycles dropped at the start: 'auto' or an int in 0..{STEPS_MAX}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _inputs(args):
    """(p, mu_L, var_L, input sampler/array, output array or None, lengths or None)."""
    from pdlib import sim
    lens = lengths_or_options(args, ("--p", "--mean-input", "--var-input"))
    if lens is not None:
        check_theory_bounds(lens, args.N)
        return lens.p, lens.mu_L, lens.var_L, lens.inputs, lens.outputs, lens
    for opt in ("p", "mean_input"):
        if getattr(args, opt) is None:
            raise CLIError(f"--{opt.replace('_', '-')} is required (or --lengths FILE.csv)")
    var = 0.0 if args.var_input is None else args.var_input
    return args.p, args.mean_input, var, sim.GammaInt(args.mean_input, var), None, None


@quiet_numerics
def run(args) -> int:
    from pdlib import metrics, sim, theory
    from pdlib.policy import DynamicKStar, FixedK

    p, mu, var, inp, outp, lens = _inputs(args)
    timing = theory.TimingModel(args.alpha_p, args.beta_p, args.alpha_d, args.beta_d)
    ks = theory.k_star(args.N, p, **timing.as_kwargs(), mu_L=mu)

    def dynamic(estimator):
        return DynamicKStar(args.N, timing, p if args.p0 is None else args.p0, ema_alpha=args.ema_alpha,
                            update_interval=args.update_interval, mu_L=mu, estimator=estimator)

    def simulate(pol):
        return sim.simulate(args.N, pol, p, input_lens=inp, output_lens=outp, steps=args.steps, seed=args.seed,
                            timing=timing, record_steps=False, pairing="joint")

    if args.dynamic:
        pol = dynamic(args.p_estimator)
    else:
        k = ks.k if args.k is None else args.k
        if not 1 <= k < args.N:
            raise CLIError(f"--k must be in 1..N-1 = 1..{args.N - 1} for --N {args.N} (theta = k/N < 1 for "
                           f"the memory theory), got {k}")
        pol = FixedK(args.N, k)
    warmup = args.warmup
    t0 = time.perf_counter()
    res = simulate(pol)
    wall = time.perf_counter() - t0
    mem = metrics.memory_summary(res.columns, warmup=warmup)
    if mem["cycles"] == 0:
        raise CLIError(_no_cycles(args, p, lens, metrics.cycles(res.columns, warmup=0), mem, int(pol.k)))
    thr = metrics.throughput_summary(res.columns)
    thr_ss = metrics.throughput_summary(res.columns, warmup=warmup)
    k = int(pol.k)  # the dynamic policy's final k
    theta = k / args.N
    th_x0 = float(theory.E_X0(args.N, theta, p, mu))
    th_kappa = float(theory.kappa(p, mu))
    th_xmax = th_x0 + th_kappa

    out = {
        "N": args.N,
        "k": k,
        "theta": theta,
        "policy": pol.name,
        "p": p,
        "mean_input": mu,
        "var_input": var,
        **({} if lens is None else {**lens.describe(), "pairing": res.meta["pairing"]}),
        "steps": args.steps,
        "seed": args.seed,
        **timing.as_kwargs(),
        "E_X0": mem["E_X0"],
        "E_Xmax": mem["E_Xmax"],
        "E_supY": mem["E_supY"],
        "cycles": mem["cycles"],
        "warmup_cycles": mem["warmup_cycles"],
        "mean_refill": mem["mean_refill"],
        "theory_E_X0": th_x0,
        "theory_E_Xmax": th_xmax,
        "theory_kappa": th_kappa,
        "E_X0_err_pct": _err(mem["E_X0"], th_x0),
        "E_Xmax_err_pct": _err(mem["E_Xmax"], th_xmax),
        "supY_vs_kappa_err_pct": _err(mem["E_supY"], th_kappa),
        "theory_E_X0_seed000_misprint": float(theory.E_X0_seed000_misprint(args.N, theta, p, mu)),
        "requests_per_s": thr["requests_per_s"],
        "output_tokens_per_s": thr["output_tokens_per_s"],
        "requests_per_s_steady": thr_ss["requests_per_s"],
        "theory_requests_per_s": float(theory.throughput(k, args.N, p, **timing.as_kwargs(), mu_L=mu)),
        "k_star": ks.k,
        "k_star_fallback_used": ks.fallback_used,
        "total_time_s": thr["total_time_s"],
        "completed": thr["completed"],
        "prefill_steps": thr["prefill_steps"],
        "decode_steps": thr["decode_steps"],
        "mean_decode_batch": thr["mean_decode_batch"],
        "wall_s": wall,
        "request_steps_per_s": res.request_steps / max(wall, 1e-9),
    }
    if args.dynamic:
        out["p_estimator"] = args.p_estimator
        out["final_p_estimate"] = float(pol.p)
        out["k_updates"] = len(pol.history)
        for est in ESTIMATORS:   # both online k* rules on the same lengths (same seed)
            pe = pol if est == args.p_estimator else dynamic(est)
            re_ = res if pe is pol else simulate(pe)
            t_all = metrics.throughput_summary(re_.columns)
            t_ss = metrics.throughput_summary(re_.columns, warmup=warmup)
            out.update({f"online_requests_per_s_{est}": _number(t_all["requests_per_s"]),
                        f"online_requests_per_s_steady_{est}": _number(t_ss["requests_per_s"]),
                        f"online_final_p_{est}": float(pe.p), f"online_final_k_{est}": int(pe.k)})
    if lens is None:
        out["validity"] = validity_list(theory.paper_validity(args.N, p, mu))
    else:
        out.update(_lengths_theory(args, k, lens, timing, mem, thr_ss))
    emit(check_finite(out, RANGE_CAUSE), args.json)
    return 0


def _number(v):
    """A rate of the second estimator's run, or None where it has none (e.g. --warmup dropped all
    of that run's cycles; the main run's numbers are checked by check_finite instead)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _err(a, b):
    return 100.0 * (a - b) / b if b else float("nan")


def _lengths_theory(args, k: int, lens, timing, mem: dict, thr_ss: dict) -> dict:
    """The length-aware predictions for the run's (final) k, beside the simulated values."""
    from pdlib.theory import lengths as TL
    try:
        law = TL.length_law(lens.inputs, lens.outputs)
        st = TL.stationary(args.N, k, law)
        m = TL.memory_model_lengths(args.N, k, law=law, stat=st, seed=0)
        t = TL.throughput_lengths(k, args.N, **timing.as_kwargs(), law=law, stat=st)
    except ValueError as e:
        raise CLIError(f"--lengths {lens.path!r}: {e}") from None
    return {"theory_lengths_E_X0": m.E_X0, "theory_lengths_E_Xmax": m.E_Xmax, "theory_lengths_E_supY": m.E_supY,
            "theory_lengths_requests_per_s": t.throughput,
            "E_X0_lengths_err_pct": _err(mem["E_X0"], m.E_X0), "E_Xmax_lengths_err_pct": _err(mem["E_Xmax"], m.E_Xmax),
            "requests_per_s_steady_lengths_err_pct": _err(thr_ss["requests_per_s"], t.throughput),
            "validity": validity_list(m.paper_validity), "validity_lengths": validity_list(m.validity)}


def _no_cycles(args, p, lens, all_cycles, mem: dict, k: int) -> str:
    """Why a run kept no steady-state memory cycle (``all_cycles``: those kept without any
    warmup), naming the option to change."""
    total, dropped = mem["total_cycles"], mem["warmup_cycles"]
    if total == 0 and p >= 1:
        return "--p 1: every request finishes in its prefill, so there is no decode phase to measure; use --p < 1"
    if len(all_cycles):
        return (f"--warmup {args.warmup} leaves none of the run's {len(all_cycles)} complete cycles "
                f"({dropped} of {total} decode phases dropped); lower --warmup or raise --steps")
    cycle = k / (args.N * p)
    src = f"--p {p:g}: raise --steps or --p" if lens is None else f"p = {p:g} of --lengths: raise --steps"
    return (f"no complete steady-state memory cycle in --steps {args.steps} ({total} decode phases, "
            f"{dropped} dropped as warmup); one cycle takes about k/(N*p) = {cycle:.3g} decode steps at {src}")
