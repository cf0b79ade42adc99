"""``pdlib profile``: time an engine's prefill and decode steps and fit the two-term models.

Writes ``records.ProfileResult.to_dict()`` (samples + alpha_p, beta_p, alpha_d, beta_d with
R^2, and the decode context effect) to ``-o FILE.json`` atomically; ``--latency-grid CSV``
also runs seed 004's calibration grid and adds its ``T(b, L)`` fit.
"""
from __future__ import annotations

from .output import CLIError, emit


def register(sub) -> None:
    p = sub.add_parser("profile", help="profile an engine's step times and fit alpha/beta (prefill, decode)")
    p.add_argument("--engine", choices=("native", "sim", "vllm"), default="native")
    p.add_argument("--model", required=True, help="model folder, Hub id, or config folder with --weights random")
    p.add_argument("--weights", choices=("pretrained", "random"), default=None)
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None)
    p.add_argument("--device", default=None, help="cuda (default for native) or cpu")
    p.add_argument("--kv-capacity-tokens", type=int, default=None)
    p.add_argument("--prefill-tokens", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--context-lens", type=int, nargs="+", default=[128, 512])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-grid", metavar="CSV", default=None,
                   help="also run seed 004's grid (batch 1..32 x seq len 128..2048 x 3 trials) and write this CSV")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", required=True, metavar="FILE.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..engines import get_engine
    from ..records import atomic_write_json

    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    config = {"model": args.model}
    for key in ("weights", "dtype", "device"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    if args.kv_capacity_tokens is not None:
        config["kv_capacity_tokens"] = args.kv_capacity_tokens
    engine = get_engine(args.engine, **config)
    prof = engine.profile(prefill_tokens=args.prefill_tokens, decode_batches=args.batches,
                          context_lens=args.context_lens, repeats=args.repeats)
    out = prof.to_dict()
    out["decode_context_effect"] = prof.decode_context_effect()
    t = prof.timing
    summary = {"engine": args.engine, "model": args.model, "alpha_p": t.alpha_p, "beta_p": t.beta_p,
               "alpha_d": t.alpha_d, "beta_d": t.beta_d, "r2_prefill": t.r2_prefill, "r2_decode": t.r2_decode,
               "prefill_samples": len(prof.prefill), "decode_samples": len(prof.decode),
               "skipped": len(prof.meta.get("skipped", []))}
    if args.latency_grid:
        rows, fit, skipped = engine.latency_grid(csv_path=args.latency_grid)
        out["latency_grid"] = {"csv": args.latency_grid, "rows": rows, "skipped": skipped,
                               "fit": {"a": fit.a, "b_": fit.b_, "g": fit.g, "r2": fit.r2}}
        summary.update(latency_a=fit.a, latency_b_=fit.b_, latency_g=fit.g, latency_r2=fit.r2,
                       latency_csv=args.latency_grid)
    atomic_write_json(args.output, out)
    summary["output"] = args.output
    emit(summary, args.json)
    return 0
