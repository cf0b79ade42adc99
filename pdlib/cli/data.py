"""``pdlib data stats``: length statistics of a workload (count, mean/median/p95/max of input and
output tokens, p = 1/mean output, skipped with the count per reason, truncated). Bad input exits 2
with one line naming the file, record and field (or the spec field and its allowed range)."""
from __future__ import annotations

from .output import CLIError, emit


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="workloads: datasets, traces, synthetic")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    s = sub.add_parser("stats", help="token-length statistics of a workload")
    s.add_argument("--dataset", required=True, help="alpaca | sharegpt | longbench | longbench_v1 | lmsys | "
                   "processbench | azure-code | azure-conv | burstgpt | sharegpt-stats | synthetic")
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
    s.add_argument("--no-cache", action="store_true", help="do not read or write the tokenized-workload cache")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=stats)


def stats(args) -> int:
    from pdlib.data import DataError, load_workload, workload_stats
    names = ("dataset", "tokenizer", "data_dir", "path", "split", "num_requests", "seed", "max_input_tokens",
             "max_output_tokens", "chat_template", "keep_prompt_only", "p", "input_len")
    spec = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.dataset == "synthetic":
        spec["input_dist"] = args.input_dist
    spec["cache"] = not args.no_cache
    try:
        wl = load_workload(spec)
    except DataError as e:
        raise CLIError(str(e)) from None
    emit(workload_stats(wl), args.json)
    return 0
