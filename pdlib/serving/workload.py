"""Workload grid for the serving profiler: input x output lengths x concurrencies x prefix modes
x N per condition -> ``workload.jsonl`` (one request per line, grouped by condition).

Prompts have an exact token length under the served model's tokenizer: they are sequences of
words that each encode to one token with a leading space (`` the``, `` cat``), so the text of
n words re-tokenizes to exactly n tokens (checked for every prompt). Without a tokenizer the
prompts are token-id lists (vLLM's /v1/completions accepts ``prompt`` as a list of ints).
``high`` prefix reuse: every request of the condition starts with the same shared prefix of
``round(HIGH_PREFIX_FRACTION * input_len)`` tokens (distinct per condition); ``low``: none.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..records import atomic_write_text

HIGH_PREFIX_FRACTION = 0.75
FIELDS = ("request_id", "condition", "input_len", "output_len", "concurrency", "prefix_mode",
          "shared_prefix_len", "prompt")


def condition_id(input_len: int, output_len: int, concurrency: int, prefix_mode: str) -> str:
    return f"in{input_len}_out{output_len}_c{concurrency}_{prefix_mode}"


def default_tokenizer_path() -> Path:
    """The Qwen3 tokenizer in the shared data folder ($PDLIB_DATA_DIR or ../shared/data)."""
    from pdlib import paths
    base = paths.data_dir() or paths.project_dir().parent / "shared" / "data"
    return base / "models" / "qwen3-1.7b"


def load_tokenizer(name_or_path: str):
    """The transformers tokenizer of a folder or Hub id, through pdlib's one tokenizer loader
    (``pdlib.data.load_tokenizer``: vocabulary checked, one clear error line)."""
    from pdlib.data import load_tokenizer as load
    from pdlib.data.errors import DataError
    try:
        return load(str(name_or_path)).hf
    except DataError as e:
        raise ValueError(f"cannot load tokenizer {name_or_path!r}: {e}") from None


_WORD = re.compile(r"^[a-z]{3,10}$")


class PromptBuilder:
    """Builds prompts of exact token lengths. ``tokenizer=None``: token-id prompts drawn from
    ``[id_low, vocab_size)``."""

    def __init__(self, tokenizer=None, vocab_size: int | None = None, id_low: int = 100):
        self.tokenizer = tokenizer
        if tokenizer is None:
            if not vocab_size or vocab_size <= id_low:
                raise ValueError("token-id prompts need vocab_size > id_low (pass --vocab-size)")
            self.vocab_size, self.id_low = int(vocab_size), id_low
            return
        words = []
        for tok, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
            w = tokenizer.convert_tokens_to_string([tok])
            if w.startswith(" ") and _WORD.match(w[1:]):
                if len(tokenizer.encode(w, add_special_tokens=False)) == 1:
                    words.append(w)
            if len(words) >= 4000:
                break
        if len(words) < 100:
            raise ValueError("tokenizer has too few single-token words to build exact-length prompts")
        self.words = np.array(words)

    @property
    def kind(self) -> str:
        return "token_ids" if self.tokenizer is None else "text"

    def pieces(self, rng: np.random.Generator, n: int) -> list:
        if n <= 0:
            return []
        if self.tokenizer is None:
            return rng.integers(self.id_low, self.vocab_size, size=n).tolist()
        return self.words[rng.integers(0, len(self.words), size=n)].tolist()

    def join(self, pieces: list):
        return list(pieces) if self.tokenizer is None else "".join(pieces)

    def count(self, prompt) -> int:
        if isinstance(prompt, list):
            return len(prompt)
        return len(self.tokenizer.encode(prompt, add_special_tokens=False))


def build_workload(cfg, builder: PromptBuilder) -> list[dict]:
    """All requests of the grid in cfg (a ServingConfig), condition by condition."""
    records = []
    for in_len in cfg.input_lens:
        for out_len in cfg.output_lens:
            for conc in cfg.concurrencies:
                for mode in cfg.prefix_modes:
                    cond = condition_id(in_len, out_len, conc, mode)
                    seed = [cfg.seed, in_len, out_len, conc, 0 if mode == "low" else 1]
                    rng = np.random.default_rng(seed)
                    n_shared = int(round(HIGH_PREFIX_FRACTION * in_len)) if mode == "high" else 0
                    shared = builder.pieces(rng, n_shared)
                    for i in range(cfg.n_per_condition):
                        prompt = builder.join(shared + builder.pieces(rng, in_len - n_shared))
                        n = builder.count(prompt)
                        if n != in_len:
                            raise ValueError(f"{cond} request {i}: prompt has {n} tokens, wanted {in_len}")
                        records.append(dict(request_id=f"{cond}_r{i:04d}", condition=cond, input_len=in_len,
                                            output_len=out_len, concurrency=conc, prefix_mode=mode,
                                            shared_prefix_len=n_shared, prompt=prompt))
    return records


def write_workload(records: list[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def read_workload(path) -> list[dict]:
    """Read workload.jsonl; a bad line raises naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"workload file not found: {path}")
    out, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{ln}: not JSON ({e})") from None
            if not isinstance(r, dict):
                raise ValueError(f"{path}:{ln}: not a JSON object")  # noqa: TRY004 - a bad file, not a bad call
            for k in FIELDS:
                if k not in r:
                    raise ValueError(f"{path}:{ln}: record {r.get('request_id', '?')}: missing field {k!r}")
            if not isinstance(r["prompt"], (str, list)):
                raise ValueError(f"{path}:{ln}: record {r['request_id']}: field 'prompt' must be text or token ids")
            for k in ("input_len", "output_len", "concurrency"):
                if not isinstance(r[k], int) or r[k] < 1:
                    raise ValueError(f"{path}:{ln}: record {r['request_id']}: field {k!r} must be a positive int")
            if r["request_id"] in seen:
                raise ValueError(f"{path}:{ln}: record {r['request_id']}: duplicate request_id")
            seen.add(r["request_id"])
            out.append(r)
    return out


def conditions(records: list[dict]) -> list[tuple[str, int, list[dict]]]:
    """(condition, concurrency, records) in file order."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["condition"], []).append(r)
    return [(c, rs[0]["concurrency"], rs) for c, rs in groups.items()]
