"""``pdlib simulate``: run the exclusive-batching simulator and compare with the theory.

Outputs are Geometric(p); inputs are the constant ``--mean-input`` (or Gamma with
``--var-input``). The queue never empties; the run stops after ``--steps`` steps.
Timing defaults (seconds) are the balanced regime of ``params/engines/sim.yaml``:
alpha_p=0.02, beta_p=2e-5 (per prompt token), alpha_d=0.008, beta_d=1e-4 (per request).
"""

from __future__ import annotations

import time

from .output import CLIError, emit

_T = {"alpha_p": 0.02, "beta_p": 2e-5, "alpha_d": 0.008, "beta_d": 1e-4}


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate exclusive batching; memory cycles and throughput vs theory",
        description=__doc__,
    )
    p.add_argument("--N", type=int, required=True, help="batch slots")
    p.add_argument("--k", type=int, help="refill size (fixed policy; default: k* from the theory)")
    p.add_argument(
        "--p", type=float, required=True, help="termination probability per step (outputs ~ Geometric(p))"
    )
    p.add_argument("--mean-input", type=float, required=True, help="mean input length mu_L (tokens)")
    p.add_argument(
        "--var-input", type=float, default=0.0, help="input length variance (Gamma, rounded); 0 = constant"
    )
    p.add_argument("--steps", type=int, default=200_000, help="steps to simulate (default 200000)")
    p.add_argument("--seed", type=int, default=0)
    for name, v in _T.items():
        p.add_argument("--" + name.replace("_", "-"), type=float, default=v, help=f"seconds (default {v})")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic k*: online EMA p, k* every --update-interval completions",
    )
    p.add_argument("--p0", type=float, help="dynamic: initial p (default --p)")
    p.add_argument("--ema-alpha", type=float, default=0.05)
    p.add_argument("--update-interval", type=int, default=32)
    p.add_argument("--warmup", default="auto", help="cycles dropped at the start: 'auto' or an int")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from pdlib import metrics, sim, theory
    from pdlib.policy import DynamicKStar, FixedK

    if args.N < 1:
        raise CLIError(f"--N must be >= 1, got {args.N}")
    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    timing = theory.TimingModel(args.alpha_p, args.beta_p, args.alpha_d, args.beta_d)
    ks = theory.k_star(args.N, args.p, **timing.as_kwargs(), mu_L=args.mean_input)
    if args.dynamic:
        pol = DynamicKStar(
            args.N,
            timing,
            args.p if args.p0 is None else args.p0,
            ema_alpha=args.ema_alpha,
            update_interval=args.update_interval,
            mu_L=args.mean_input,
        )
    else:
        k = ks.k if args.k is None else args.k
        if not 1 <= k < args.N:
            raise CLIError(f"--k must be in 1..N-1 (theta = k/N < 1 for the memory theory), got {k}")
        pol = FixedK(args.N, k)
    warmup = args.warmup if args.warmup == "auto" else int(args.warmup)
    inp = sim.GammaInt(args.mean_input, args.var_input)
    t0 = time.perf_counter()
    res = sim.simulate(
        args.N,
        pol,
        args.p,
        input_lens=inp,
        steps=args.steps,
        seed=args.seed,
        timing=timing,
        record_steps=False,
    )
    wall = time.perf_counter() - t0
    mem = metrics.memory_summary(res.columns, warmup=warmup)
    thr = metrics.throughput_summary(res.columns)
    thr_ss = metrics.throughput_summary(res.columns, warmup=warmup)
    k = int(pol.k)  # the dynamic policy's final k
    theta = k / args.N
    th_x0 = float(theory.E_X0(args.N, theta, args.p, args.mean_input))
    th_kappa = float(theory.kappa(args.p, args.mean_input))
    th_xmax = th_x0 + th_kappa

    def err(a, b):
        return 100.0 * (a - b) / b if b else float("nan")

    out = {
        "N": args.N,
        "k": k,
        "theta": theta,
        "policy": pol.name,
        "p": args.p,
        "mean_input": args.mean_input,
        "var_input": args.var_input,
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
        "E_X0_err_pct": err(mem["E_X0"], th_x0),
        "E_Xmax_err_pct": err(mem["E_Xmax"], th_xmax),
        "supY_vs_kappa_err_pct": err(mem["E_supY"], th_kappa),
        "theory_E_X0_seed000_misprint": float(
            theory.E_X0_seed000_misprint(args.N, theta, args.p, args.mean_input)
        ),
        "requests_per_s": thr["requests_per_s"],
        "output_tokens_per_s": thr["output_tokens_per_s"],
        "requests_per_s_steady": thr_ss["requests_per_s"],
        "theory_requests_per_s": float(
            theory.throughput(k, args.N, args.p, **timing.as_kwargs(), mu_L=args.mean_input)
        ),
        "k_star": ks.k,
        "k_star_fallback_used": ks.fallback_used,
        "total_time_s": thr["total_time_s"],
        "completed": thr["completed"],
        "prefill_steps": thr["prefill_steps"],
        "decode_steps": thr["decode_steps"],
        "mean_decode_batch": thr["mean_decode_batch"],
        "wall_s": wall,
        "request_steps_per_s": res.request_steps / wall if wall > 0 else float("nan"),
    }
    if args.dynamic:
        out["final_p_estimate"] = float(pol.p)
        out["k_updates"] = len(pol.history)
    emit(out, args.json)
    return 0
