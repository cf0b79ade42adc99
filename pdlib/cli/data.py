"""``pdlib data stats``: length statistics of a workload (count, mean/median/p95/max of input and
output tokens, p = 1/mean output, skipped with the count per reason, truncated).
``pdlib data lengths -o FILE.csv``: the workload's paired (input, output) token counts, one request
per line under the header ``input_tokens,output_tokens`` (the file ``--lengths`` of ``kstar``,
``memory`` and ``simulate`` reads; written atomically), with the same skip counts on stdout.
Bad input exits 2 with one line naming the file, record and field (or the spec field and its
allowed range)."""
from __future__ import annotations

import os

from .output import CLIError, emit

_SPEC_FIELDS = ("dataset", "tokenizer", "data_dir", "path", "split", "num_requests", "seed", "max_input_tokens",
                "max_output_tokens", "chat_template", "keep_prompt_only", "p", "input_len", "input_col", "output_col")


def _workload_options(s) -> None:
    s.add_argument("--dataset", required=True, help="alpaca | sharegpt | longbench | longbench_v1 | lmsys | "
                   "processbench | azure-code | azure-conv | burstgpt | sharegpt-stats | trace (any length trace: "
                   "--path FILE.csv|.jsonl) | synthetic")
    s.add_argument("--tokenizer", help="tokenizer folder, HF id, or a name in DATA_DIR/models (qwen3, llama-2); "
                   "needed for text datasets")
    s.add_argument("--data-dir", help="data folder (default $PDLIB_DATA_DIR, else ../shared/data)")
    s.add_argument("--path", help="a local file or folder in the dataset's local form")
    s.add_argument("--split")
    s.add_argument("--num-requests", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--max-input-tokens", type=int, help="skip longer prompts (counted)")
    s.add_argument("--max-output-tokens", type=int, help="cap longer outputs (counted as truncated)")
    s.add_argument("--chat-template", action="store_true", help="apply the tokenizer's chat template")
    s.add_argument("--keep-prompt-only", action="store_true", help="sharegpt: keep conversations with no reply")
    s.add_argument("--p", type=float, help="synthetic: termination probability")
    s.add_argument("--input-len", type=int, help="synthetic: input length (fixed) or mean (geometric)")
    s.add_argument("--input-dist", default="fixed", help="synthetic: fixed | uniform | geometric")
    s.add_argument("--input-col", help="traces: the column with input (prompt) token counts (default: the "
                   "trace's own, or detected for --dataset trace: input_length, ContextTokens, Request tokens, "
                   "num_prefill_tokens, ...)")
    s.add_argument("--output-col", help="traces: the column with output token counts (default: as --input-col: "
                   "output_length, GeneratedTokens, Response tokens, num_decode_tokens, ...)")
    s.add_argument("--no-cache", action="store_true", help="do not read or write the tokenized-workload cache")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="workloads: datasets, traces, synthetic")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    s = sub.add_parser("stats", help="token-length statistics of a workload")
    _workload_options(s)
    s.set_defaults(func=stats)
    s = sub.add_parser("lengths", help="write a workload's paired token counts (input_tokens,output_tokens) "
                       "for --lengths")
    _workload_options(s)
    s.add_argument("-o", "--output", required=True, metavar="FILE.csv", help="the CSV file to write (atomically)")
    s.set_defaults(func=lengths)


def _load(args):
    from pdlib.data import DataError, load_workload
    spec = {k: getattr(args, k) for k in _SPEC_FIELDS if getattr(args, k) is not None}
    if args.dataset == "synthetic":
        spec["input_dist"] = args.input_dist
    spec["cache"] = not args.no_cache
    try:
        return load_workload(spec)
    except DataError as e:
        raise CLIError(str(e)) from None


def stats(args) -> int:
    from pdlib.data import workload_stats
    st = workload_stats(_load(args))
    emit(st if args.json else with_skip_rows(st), args.json)
    return 0


def with_skip_rows(st: dict) -> dict:
    """The human table's form: ``skip_reasons`` as one ``skipped: REASON  COUNT`` row per reason."""
    out = {k: v for k, v in st.items() if k != "skip_reasons"}
    for reason, n in (st.get("skip_reasons") or {}).items():
        out[f"skipped: {reason}"] = n
    return out


def lengths(args) -> int:
    from pdlib.data import workload_stats
    from pdlib.records import atomic_write_text

    from .lengths import format_lengths
    where = f"-o {args.output!r}"
    if not args.output.strip() or os.path.isdir(args.output):
        raise CLIError(f"{where}: give a file name (FILE.csv), not a folder")
    if os.path.lexists(args.output) and not os.path.isfile(args.output):
        raise CLIError(f"{where}: exists and is not a regular file (it would be replaced)")
    wl = _load(args)
    prompt_only = set((wl.meta or {}).get("prompt_only_ids") or ())
    reqs = [r for r in wl.requests if r.id not in prompt_only]   # no reference output: nothing to pair
    if not reqs:
        raise CLIError(f"--dataset {args.dataset}: no request with a reference output length to write"
                       + (f" ({len(prompt_only)} prompt-only requests kept by --keep-prompt-only have none)"
                          if prompt_only else ""))
    try:
        text = format_lengths([r.input_len for r in reqs], [r.output_len for r in reqs])
    except ValueError as e:
        raise CLIError(f"--dataset {args.dataset}: {e}") from None
    try:
        atomic_write_text(args.output, text)
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise CLIError(f"{where}: cannot write the file ({getattr(e, 'strerror', None) or e})") from None
    st = workload_stats(wl)
    n_in, n_out = sum(r.input_len for r in reqs), sum(r.output_len for r in reqs)
    out = {"output": os.path.abspath(args.output), "dataset": st["dataset"], "pairs": len(reqs),
           "input_mean": n_in / len(reqs), "output_mean": n_out / len(reqs), "p": len(reqs) / n_out,
           "skipped": st["skipped"], "skip_reasons": st["skip_reasons"], "truncated": st["truncated"],
           "tokenizer": st["tokenizer"]}
    if prompt_only:
        out["prompt_only_dropped"] = len(prompt_only)
    for k in ("tokenizer_note", "lengths", "note"):
        if k in st:
            out[k] = st[k]
    emit(out, args.json)
    return 0
