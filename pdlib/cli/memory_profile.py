"""``pdlib profile-memory`` (memory breakdown of one generate call) and
``pdlib compare-estimates`` (measured vs calculated per component)."""
from __future__ import annotations

import json
from pathlib import Path

from .output import CLIError, emit


def register(sub) -> None:
    p = sub.add_parser("profile-memory", help="memory breakdown: weights, KV cache, activations, overhead",
                       description="Warm up, then measure the memory of generating --max-tokens tokens for "
                                   "--batch-size copies of a prompt, --repeats times; write the JSON.")
    p.add_argument("--model", required=True, help="model folder (config.json) or Hub ID")
    p.add_argument("--weights", choices=("random", "pretrained"), default="random",
                   help="random: built from the config with seeded random weights (default)")
    p.add_argument("--prompt", default=None, help="prompt text (tokenized with the model folder's tokenizer, "
                   "else its UTF-8 bytes modulo vocab_size)")
    p.add_argument("--prompt-length", type=int, default=None,
                   help="exactly N prompt tokens (prompt ids repeated/truncated, or seeded random ids)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per sequence (EOS ignored)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", default="float16", help="float16 | bfloat16 | float32")
    p.add_argument("--engine", choices=("hf", "native"), default="hf")
    p.add_argument("--cache", choices=("dynamic", "static"), default="dynamic",
                   help="hf engine: DynamicCache or StaticCache")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | auto (shard over all GPUs); "
                   "default cuda when available")
    p.add_argument("--repeats", type=int, default=3, help="measured runs after one warm-up (3-5)")
    p.add_argument("--per-layer", default=None, metavar="TABLE.csv",
                   help="also write the torch.profiler per-layer memory table here")
    p.add_argument("--output", required=True, metavar="FILE.json")
    p.add_argument("--json", action="store_true", help="print the whole profile as one JSON object")
    p.set_defaults(func=_profile)

    c = sub.add_parser("compare-estimates", help="measured vs calculated memory per component",
                       description="Without --calc-* flags the calculator is pdlib.theory's "
                                   "(pdlib.memprof.compare documents it).")
    c.add_argument("profile", metavar="PROFILE.json")
    for flag in ("weights", "kv", "activations", "overhead"):
        c.add_argument(f"--calc-{flag}", type=float, default=None, metavar="GB",
                       help=f"an external calculator's {flag} estimate (GB)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_compare)


def _profile(args) -> int:
    from pdlib.memprof import profile_breakdown
    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    prof = profile_breakdown(args.model, weights=args.weights, prompt=args.prompt, max_tokens=args.max_tokens,
                             batch_size=args.batch_size, dtype=args.dtype, engine=args.engine, device=args.device,
                             repeats=args.repeats, prompt_length=args.prompt_length, cache=args.cache,
                             per_layer=args.per_layer)
    prof.write(args.output)
    res = prof.to_json()
    if args.json:
        emit(res, True)
        return 0
    mb, sp = res["memory_breakdown"], res["repeats"]["spread"]
    out = {}
    for k, v in mb.items():
        s = sp.get(k)
        out[k] = None if v is None else (f"{v:.6g}" + (f" (std {s['std']:.3g}, n={s['n']})" if s else ""))
    mi = res["model_info"]
    out.update(model=mi["name"], device=res["device"], dtype=mi["dtype"], batch_size=mi["batch_size"],
               prompt_length=mi["prompt_length"], generated_length=mi["generated_length"],
               kv_formula_gb=res["measurements"]["kv_cache"]["formula_gb"], output=args.output)
    emit(out, False)
    return 0


def _compare(args) -> int:
    from pdlib.memprof import compare_estimates
    path = Path(args.profile)
    if not path.is_file():
        raise CLIError(f"{path}: no such profile file")
    try:
        prof = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CLIError(f"{path}: not JSON ({e})") from None
    try:
        res = compare_estimates(prof, args.calc_weights, args.calc_kv, args.calc_activations, args.calc_overhead)
    except ValueError as e:
        raise CLIError(f"{path}: {e}") from None
    if args.json:
        emit(res, True)
        return 0
    hdr = f"{'component':<22} {'measured_GB':>12} {'calculated_GB':>14} {'error_%':>9}  recommendation"
    print(hdr)
    for r in res["rows"]:
        m = "null" if r["measured_gb"] is None else f"{r['measured_gb']:.6g}"
        e = "n/a" if r["error_pct"] is None else f"{r['error_pct']:+.1f}"
        print(f"{r['component']:<22} {m:>12} {r['calculated_gb']:>14.6g} {e:>9}  {r['recommendation']}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m pdlib.cli.memory_profile ...``): only these two commands, so a
    container needs torch, transformers and numpy, not the rest of pdlib's dependencies."""
    import argparse

    from pdlib.cli import run_command
    parser = argparse.ArgumentParser(prog="pdlib-memory")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
