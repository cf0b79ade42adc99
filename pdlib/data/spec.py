"""Dataset specs: what ``load_workload`` is asked for, the known datasets, the data folder.

``DATASETS`` maps each name to its kind (text | trace | synthetic), its Hugging Face hub id
(``None`` for local-only sources) and its local form under the data folder (a folder laid out
like ``../shared/data``; ``$PDLIB_DATA_DIR`` or ``path=`` point elsewhere).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from pdlib.workload import MAX_TOKENS, MAX_TOKENS_TEXT

MAX_REQUESTS = 10**7      # num_requests above this would not fit in memory as Request objects
MIN_P = 1e-9              # synthetic p: mean output 1/p <= 10^9 tokens
_COUNTS = {"num_requests": (MAX_REQUESTS, "10^7"), "max_input_tokens": (MAX_TOKENS, MAX_TOKENS_TEXT),
           "max_output_tokens": (MAX_TOKENS, MAX_TOKENS_TEXT), "input_len": (MAX_TOKENS, MAX_TOKENS_TEXT),
           "input_min": (MAX_TOKENS, MAX_TOKENS_TEXT), "input_max": (MAX_TOKENS, MAX_TOKENS_TEXT)}
_TEXTS = ("split", "path", "data_dir", "input_dist", "input_col", "output_col")
_FLAGS = ("chat_template", "keep_prompt_only", "cache")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    name: str
    kind: str                         # "text" | "trace" | "synthetic"
    hub_id: str | None
    local: str                        # the local form, relative to the data folder
    splits: tuple[str, ...] = ()      # known splits (empty: no split needed)
    note: str = ""


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("alpaca", "text", "tatsu-lab/alpaca",
                "alpaca/alpaca_data.json or alpaca/alpaca_5000.json (a JSON list of {instruction, input, output})",
                note="prompt = instruction + blank line + input; reference output = output"),
    DatasetInfo("sharegpt", "text", "anon8231489123/ShareGPT_Vicuna_unfiltered",
                "sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json or sharegpt/sharegpt_sample.json "
                "(a JSON list of {id, conversations: [{from, value}]})",
                note="first human turn = prompt, the gpt turn right after it = reference output"),
    DatasetInfo("longbench", "text", "THUDM/LongBench-v2",
                "longbench_v2/<domain>/sample_*.md + *_context.txt, or JSON/JSONL/parquet hub rows",
                splits=("short", "medium", "long"),
                note="LongBench v2 multiple choice; reference output = 'The correct answer is (X)'"),
    DatasetInfo("longbench_v1", "text", "THUDM/LongBench", "longbench_v1/<task>.jsonl (hub rows)",
                splits=("narrativeqa", "qasper", "multifieldqa_en", "multifieldqa_zh", "hotpotqa", "2wikimqa",
                        "musique", "dureader", "gov_report", "qmsum", "multi_news", "vcsum", "trec",
                        "triviaqa", "samsum", "lsht", "passage_count", "passage_retrieval_en",
                        "passage_retrieval_zh", "lcc", "repobench-p"),
                note="split = task; prompt = context + question; reference output = answers[0]"),
    DatasetInfo("lmsys", "text", "lmsys/lmsys-chat-1m", "lmsys/*.parquet|*.jsonl|*.json (hub rows)",
                note="first user turn = prompt, the assistant turn after it = reference output"),
    DatasetInfo("processbench", "text", "Qwen/ProcessBench", "processbench/<split>.jsonl|.json|.parquet (hub rows)",
                splits=("gsm8k", "math", "olympiadbench", "omni-math"),
                note="prompt = problem; reference output = the solution steps joined by blank lines"),
    DatasetInfo("azure-code", "trace", None, "traces/AzureLLMInferenceTrace_code.csv",
                note="Azure LLM inference trace 2023 (code); counts from the service's tokenizer (GPT-4 family), not the model's"),
    DatasetInfo("azure-conv", "trace", None, "traces/AzureLLMInferenceTrace_conv.csv",
                note="Azure LLM inference trace 2023 (conversation); counts from the service's tokenizer (GPT-4 family), not the model's"),
    DatasetInfo("burstgpt", "trace", None, "traces/burstgpt_slice.csv (or BurstGPT_*.csv)",
                splits=("ChatGPT", "GPT-4"),
                note="BurstGPT; counts from the OpenAI tokenizer of ChatGPT/GPT-4, not the model's; split = Model column"),
    DatasetInfo("sharegpt-stats", "trace", None, "traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
                note="ShareGPT lengths counted with the Llama-2 tokenizer, not the model's"),
    DatasetInfo("trace", "trace", None, "any length trace given by path: CSV, JSON Lines or a JSON list",
                note="counts from the trace; columns from input_col/output_col or detected (Mooncake input_length/"
                     "output_length, Azure, BurstGPT, etalon num_prefill_tokens/num_decode_tokens, ...); "
                     "named after its file"),
    DatasetInfo("synthetic", "synthetic", None, "(generated)",
                note="geometric output lengths with termination probability p; input lengths from input_dist"),
)}


@dataclass(slots=True)
class DatasetSpec:
    """Everything that determines a workload. Unknown keys in a dict spec are an error."""
    dataset: str
    split: str | None = None
    path: str | None = None               # a local file or folder in the dataset's local form
    data_dir: str | None = None           # default: $PDLIB_DATA_DIR, else ../shared/data
    tokenizer: str | None = None          # path, HF id, or a name inside data_dir/models (qwen3, llama-2)
    num_requests: int | None = None
    seed: int | None = None               # None: file order; an int: a seeded random sample/order
    max_input_tokens: int | None = None   # longer prompts are skipped (counted)
    max_output_tokens: int | None = None  # longer outputs are capped (counted as truncated)
    chat_template: bool = False
    keep_prompt_only: bool = False        # sharegpt: keep conversations with no reply (output = max_output_tokens)
    p: float | None = None                # synthetic: termination probability per decode step
    input_len: int | None = None          # synthetic: fixed input length, or mean for input_dist="geometric"
    input_dist: str = "fixed"             # synthetic: fixed | uniform | geometric
    input_min: int | None = None          # synthetic uniform bounds
    input_max: int | None = None
    cache: bool = True                    # read/write the on-disk tokenized-workload cache
    input_col: str | None = None          # traces: the input-token column (None: the trace's, or detected)
    output_col: str | None = None         # traces: the output-token column

    @classmethod
    def from_any(cls, spec) -> DatasetSpec:
        if isinstance(spec, DatasetSpec):
            out = dataclasses.replace(spec)
        elif isinstance(spec, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(spec) - names)
            if unknown:
                raise ValueError(f"unknown dataset spec key(s) {unknown}; known: {sorted(names)}")
            if "dataset" not in spec:
                raise ValueError(f"dataset spec needs 'dataset' (one of {sorted(DATASETS)})")
            out = cls(**spec)
        elif isinstance(spec, str):
            out = cls(dataset=spec)
        else:
            raise ValueError(f"dataset spec must be a dict or DatasetSpec, not {type(spec).__name__}")  # noqa: TRY004
        out.validate()
        return out

    def validate(self) -> None:
        """Every field's type and range, before anything is read or allocated (``ValueError`` naming
        the field and what is allowed)."""
        if not isinstance(self.dataset, str) or self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {_short(self.dataset)}; known: {', '.join(DATASETS)}")
        for k, (hi, hi_text) in _COUNTS.items():
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi):
                raise ValueError(f"dataset spec {k}={_short(v)}: expected a positive integer, allowed 1..{hi_text}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"dataset spec seed={_short(self.seed)}: expected an integer >= 0")
        for k in _TEXTS:
            v = getattr(self, k)
            if v is not None and not isinstance(v, (str, os.PathLike)):
                raise ValueError(f"dataset spec {k}={_short(v)}: expected a string")
        tok = self.tokenizer
        if tok is not None and not isinstance(tok, (str, os.PathLike)) and not hasattr(tok, "encode_prompts"):
            raise ValueError(f"dataset spec tokenizer={_short(tok)}: expected a folder, a Hugging Face id "
                             f"or a name in <data_dir>/models")
        cols = [k for k in ("input_col", "output_col") if getattr(self, k) is not None]
        if cols and DATASETS[self.dataset].kind != "trace":
            raise ValueError(f"dataset spec {cols[0]}={_short(getattr(self, cols[0]))}: only for length traces "
                             f"({', '.join(n for n, d in DATASETS.items() if d.kind == 'trace')}), not {self.dataset}")
        bad_flags = [k for k in _FLAGS if not isinstance(getattr(self, k), bool)]
        if bad_flags:
            k = bad_flags[0]
            raise ValueError(f"dataset spec {k}={_short(getattr(self, k))}: expected true or false")
        p = self.p
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p)
                              or not MIN_P <= p <= 1):
            raise ValueError(f"dataset spec p={_short(p)}: the termination probability, allowed {MIN_P:g}..1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def resolve_data_dir(data_dir=None) -> Path | None:
    """The data folder (``pdlib.paths.data_dir``: the argument, else ``$PDLIB_DATA_DIR``, else
    ``shared/data`` beside the checkout)."""
    from pdlib import paths
    return paths.data_dir(data_dir)
