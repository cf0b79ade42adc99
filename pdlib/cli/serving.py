"""``pdlib serve-profile``: memory pressure of a running OpenAI-compatible server (seed 003).

  pdlib serve-profile workload -o workload.jsonl      # the grid, prompts of exact token lengths
  pdlib serve-profile sample -o gpu.csv --duration 30  # NVML + /metrics samplers alone
  pdlib serve-profile requests workload.jsonl -o request_trace.csv
  pdlib serve-profile run                              # all of it -> OUTPUT_DIR/<run_id>/
  pdlib serve-profile plot RUN_DIR -o timeline.png

Settings come from the seed's environment variables (VLLM_URL, MODEL_NAME, INPUT_LENS, ...);
flags override them. Every value is checked (``pdlib.serving.config.RANGES``): a bad flag is a
one-line error naming it (exit 2), a bad variable likewise names the variable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..serving.config import RANGES, parse_value
from .output import POS_SECONDS_ARG, CLIError, emit

# flag -> (config field, help)
FLAGS = {
    "--url": ("vllm_url", "server base URL [VLLM_URL]"),
    "--model": ("model_name", "served model name [MODEL_NAME; default: first of /v1/models]"),
    "--input-lens": ("input_lens", "comma-separated prompt lengths in tokens [INPUT_LENS]"),
    "--output-lens": ("output_lens", "comma-separated output lengths in tokens [OUTPUT_LENS]"),
    "--concurrencies": ("concurrencies", "comma-separated in-flight request limits [CONCURRENCIES]"),
    "--prefix-modes": ("prefix_modes", "low,high prefix reuse [PREFIX_MODES]"),
    "--n-per-condition": ("n_per_condition", "requests per condition [N_PER_CONDITION]"),
    "--gpu-interval-ms": ("gpu_interval_ms", "NVML sampling period [GPU_INTERVAL_MS]"),
    "--gpu-indices": ("gpu_indices", "comma-separated NVML GPU indices [GPU_INDICES]"),
    "--output-dir": ("output_dir", "where run folders go [OUTPUT_DIR]"),
    "--run-tag": ("run_tag", "suffix of the run id [RUN_TAG]"),
    "--request-timeout": ("request_timeout", "seconds per request, whole response [REQUEST_TIMEOUT]"),
    "--tokenizer": ("tokenizer", "tokenizer path/name, or 'none' for token-id prompts [TOKENIZER]"),
    "--metrics-interval-ms": ("metrics_interval_ms", "/metrics scrape period [METRICS_INTERVAL_MS]"),
    "--seed": ("seed", "prompt RNG seed [SEED]"),
}
WHICH = {
    "workload": ("input_lens", "output_lens", "concurrencies", "prefix_modes", "n_per_condition", "tokenizer",
                 "seed", "vllm_url", "model_name"),
    "sample": ("vllm_url", "gpu_interval_ms", "gpu_indices", "metrics_interval_ms"),
    "requests": ("vllm_url", "model_name", "request_timeout"),
    "run": tuple(f for f, _ in FLAGS.values()),
}


def _flag_type(field):
    """argparse type of a setting's flag: parsed and checked like its environment variable."""
    def parse(text: str):
        try:
            return parse_value(field, text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {RANGES[field][1]}, got {text!r}") from None
    return parse


def _add_flags(p, which):
    for flag, (field, help_) in FLAGS.items():
        if field in WHICH[which]:
            p.add_argument(flag, dest=field, default=None, type=_flag_type(field), help=help_)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers) -> None:
    p = subparsers.add_parser("serve-profile", help="memory pressure of a running vLLM/OpenAI server",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="serve_cmd", metavar="STEP")
    sub.required = True
    w = sub.add_parser("workload", help="write the grid's workload.jsonl")
    w.add_argument("-o", "--out", required=True, help="workload.jsonl to write")
    w.add_argument("--offline", action="store_true", help="do not ask the server (tokenizer from --tokenizer)")
    _add_flags(w, "workload")
    w.set_defaults(func=cmd_workload)
    s = sub.add_parser("sample", help="run the NVML and /metrics samplers for a while")
    s.add_argument("-o", "--out", required=True, help="gpu_mem_trace.csv to write")
    s.add_argument("--kv-out", default=None, help="kv_trace.csv to write (default: beside --out)")
    s.add_argument("--duration", type=POS_SECONDS_ARG, required=True, help="seconds")
    _add_flags(s, "sample")
    s.set_defaults(func=cmd_sample)
    r = sub.add_parser("requests", help="send a workload.jsonl, write request_trace.csv")
    r.add_argument("workload", help="workload.jsonl")
    r.add_argument("-o", "--out", required=True, help="request_trace.csv to write (appended; ok ids are skipped)")
    _add_flags(r, "requests")
    r.set_defaults(func=cmd_requests)
    a = sub.add_parser("run", help="workload + samplers + requests + summary in one run folder")
    a.add_argument("--workload", default=None, help="use this workload.jsonl instead of building the grid")
    a.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run folder")
    a.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_flags(a, "run")
    a.set_defaults(func=cmd_run)
    pl = sub.add_parser("plot", help="timeline figure of a run folder")
    pl.add_argument("run_dir")
    pl.add_argument("-o", "--out", required=True, help="image file (png, svg, pdf)")
    pl.set_defaults(func=cmd_plot, json=False)


def _config(args):
    from ..serving.config import ENV_VARS, from_env
    return from_env(**{f: getattr(args, f) for f in ENV_VARS if getattr(args, f, None) is not None})


def _server_error(e) -> CLIError:
    from ..serving.orchestrator import ServerUnreachable
    hint = " (is the server running? set VLLM_URL or --url)" if isinstance(e, ServerUnreachable) else ""
    return CLIError(f"{e}{hint}")


def _probe(cfg):
    from ..serving.orchestrator import ServerProblem, probe_server
    try:
        return probe_server(cfg.vllm_url)
    except ServerProblem as e:
        raise _server_error(e) from None


def cmd_workload(args) -> int:
    from ..serving.orchestrator import make_builder
    from ..serving.workload import build_workload, write_workload
    cfg = _config(args)
    info = None if args.offline else _probe(cfg)
    builder, tok = make_builder(cfg, info)
    recs = build_workload(cfg, builder)
    write_workload(recs, args.out)
    emit({"out": args.out, "requests": len(recs), "conditions": len({r["condition"] for r in recs}),
          "prompt_kind": builder.kind, "tokenizer": tok}, args.json)
    return 0


def cmd_sample(args) -> int:
    from ..serving.samplers import sample_for
    cfg = _config(args)
    kv_out = args.kv_out or str(Path(args.out).with_name("kv_trace.csv"))
    _probe(cfg)
    res = sample_for(args.duration, url=cfg.vllm_url, gpu_path=args.out, kv_path=kv_out,
                     gpu_indices=cfg.gpu_indices, gpu_interval_ms=cfg.gpu_interval_ms,
                     metrics_interval_ms=cfg.metrics_interval_ms)
    emit({"gpu_out": args.out, "kv_out": kv_out, **res}, args.json)
    return 0


def cmd_requests(args) -> int:
    from ..serving.orchestrator import resolve_model
    from ..serving.requests import count_outcomes, run_requests
    from ..serving.workload import read_workload
    cfg = _config(args)
    recs = read_workload(args.workload)
    from ..serving.orchestrator import ServerProblem
    try:
        model = resolve_model(cfg, _probe(cfg))
    except ServerProblem as e:
        raise _server_error(e) from None
    rows = run_requests(recs, cfg.vllm_url, model, args.out, timeout=cfg.request_timeout)
    counts = count_outcomes(rows)
    emit({"out": args.out, "sent": len(rows), **{f"outcome_{k}": v for k, v in counts.items()}}, args.json)
    return _fail_line("requests", len(rows), counts)


def _fail_line(cmd, n, counts) -> int:
    bad = {k: v for k, v in counts.items() if k != "ok"}
    if not bad:
        return 0
    print(f"pdlib serve-profile {cmd}: {sum(bad.values())} of {n} requests failed ("
          + ", ".join(f"{k} {v}" for k, v in bad.items()) + ")", file=sys.stderr)
    return 1


def cmd_run(args) -> int:
    from ..serving.orchestrator import ServerProblem, run_profile
    cfg = _config(args)
    try:
        out = run_profile(cfg, run_dir=args.resume, workload_path=args.workload, progress=not args.quiet)
    except ServerProblem as e:
        raise _server_error(e) from None
    emit(out, args.json)
    if out["failures"]:
        print(f"pdlib serve-profile run: {out['message']}", file=sys.stderr)
        return 1
    return 0


def cmd_plot(args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    from ..report.serving import plot_run
    plot_run(args.run_dir, args.out)
    emit({"out": args.out}, args.json)
    return 0
