"""The model's real tokenizer: a local folder (Qwen3 vocab.json + merges.txt, Llama-2
tokenizer.json / tokenizer.model, any saved tokenizer), a short name resolved inside
``<data_dir>/models`` (``qwen3``, ``llama-2``, or a folder name there), or a Hugging Face id.

Tokenization is batched through the fast (Rust) tokenizer; loaded tokenizers are kept per process.
A loaded tokenizer must have at least ``MIN_VOCAB`` entries and encode ``PROBE`` losslessly: a
missing, truncated or corrupt vocabulary is a ``DataError``, never a workload whose every record
tokenizes to nothing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .cache import file_hash
from .errors import DataError

ALIASES = {"qwen3": "qwen3-1.7b", "qwen": "qwen3-1.7b", "qwen2.5": "qwen3-1.7b",
           "llama-2": "llama-2-7b", "llama2": "llama-2-7b", "llama": "llama-2-7b"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
BATCH = 1024
MIN_VOCAB = 256         # a byte-level BPE has 256 base tokens; fewer means a broken vocabulary
PROBE = "Hello world"

_LOADED: dict = {}   # resolved folder or hub id -> Tokenizer


@dataclass
class Tokenizer:
    name: str           # short name (folder name or hub id)
    identity: str       # what the cache key uses: content hash of the files, or the hub id
    source: str         # resolved folder or hub id
    hf: object          # the transformers tokenizer

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def encode_prompts(self, prompts: list[str], chat_template: bool = False) -> list[list[int]]:
        """Token ids of the prompts as the model sees them: special tokens (e.g. Llama's BOS)
        added, or the chat template with the generation prompt when ``chat_template``."""
        if chat_template:
            texts = self.hf.apply_chat_template([[{"role": "user", "content": p}] for p in prompts],
                                                tokenize=False, add_generation_prompt=True)
            return self._batch(texts, add_special_tokens=False)
        return self._batch(prompts, add_special_tokens=True)

    def count(self, texts: list[str]) -> list[int]:
        """Token counts of reference outputs (no special tokens)."""
        return [len(x) for x in self._batch(texts, add_special_tokens=False)]

    def _batch(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        out: list[list[int]] = []
        for i in range(0, len(texts), BATCH):
            enc = self.hf(texts[i:i + BATCH], add_special_tokens=add_special_tokens,
                          return_attention_mask=False, return_token_type_ids=False)
            out.extend(enc["input_ids"])
        return out


def resolve_tokenizer_path(name: str, data_dir: Path | None) -> Path | None:
    """A local folder for ``name``: an existing path, or ``<data_dir>/models/<alias or name>``."""
    p = Path(name).expanduser()
    if p.exists():
        return p.parent if p.is_file() else p
    if data_dir is not None:
        cand = Path(data_dir) / "models" / ALIASES.get(name.lower(), name)
        if cand.is_dir():
            return cand
    return None


def _files_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for fn in TOKENIZER_FILES:
        f = folder / fn
        if f.is_file():
            h.update(fn.encode())
            try:
                h.update(file_hash(f).encode())     # memoised per (path, size, mtime)
            except OSError as e:
                raise DataError(f"cannot read tokenizer file ({e.strerror or e})", file=f) from None
    return h.hexdigest()[:16]


def _load_folder(folder: Path):
    from transformers import AutoTokenizer
    has = {fn for fn in TOKENIZER_FILES if (folder / fn).is_file()}
    if not has & {"tokenizer.json", "tokenizer.model", "vocab.json"}:
        raise DataError(f"no tokenizer files (one of tokenizer.json, tokenizer.model, vocab.json+merges.txt) "
                        f"in this folder; have {sorted(p.name for p in folder.iterdir())}", file=folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as first:
        if not {"vocab.json", "merges.txt"} <= has:
            raise DataError(f"cannot load a tokenizer ({type(first).__name__}: {first})", file=folder) from first
    # a bare BPE vocabulary (Qwen2/2.5/3 family): from_pretrained reads vocab.json + merges.txt
    # (the constructor's vocab_file=/merges_file= are ignored by transformers 5: a 1-entry vocabulary)
    from transformers import Qwen2Tokenizer
    try:
        return Qwen2Tokenizer.from_pretrained(str(folder))
    except Exception as e:
        raise DataError(f"cannot load vocab.json + merges.txt as a BPE tokenizer ({type(e).__name__}: {e})",
                        file=folder) from e


def check_vocabulary(hf, source) -> None:
    """A usable tokenizer: at least ``MIN_VOCAB`` entries and ``PROBE`` encoded without loss."""
    n = len(hf)
    if n < MIN_VOCAB:
        raise DataError(f"the vocabulary has {n} entries (allowed >= {MIN_VOCAB}): its vocab.json / tokenizer.json "
                        f"is missing, truncated or corrupt", file=source, field="vocabulary")
    ids = hf(PROBE, add_special_tokens=False)["input_ids"]
    back = hf.decode(ids, skip_special_tokens=True)
    if not ids or back.casefold().split() != PROBE.casefold().split():
        raise DataError(f"{PROBE!r} encodes to {ids[:8]} and decodes to {back[:40]!r}: the vocabulary or merges "
                        f"are corrupt", file=source, field="vocabulary")


def _require(name):
    if not name:
        raise ValueError("a text dataset needs a tokenizer: a folder (e.g. ../shared/data/models/qwen3-1.7b), "
                         "a Hugging Face id, or a name inside <data_dir>/models (qwen3, llama-2)")


def tokenizer_identity(name, data_dir: Path | None = None) -> str:
    """What the cache key uses, without loading the tokenizer: ``<folder>:<hash of its files>`` or
    ``hub:<id>``."""
    if isinstance(name, Tokenizer):
        return name.identity
    _require(name)
    folder = resolve_tokenizer_path(str(name), data_dir)
    return f"{folder.name}:{_files_hash(folder)}" if folder is not None else f"hub:{name}"


def load_tokenizer(name, data_dir: Path | None = None) -> Tokenizer:
    """Load (once per process) the tokenizer ``name``; see the module docstring for the forms."""
    if isinstance(name, Tokenizer):
        return name
    _require(name)
    folder = resolve_tokenizer_path(str(name), data_dir)
    identity = f"{folder.name}:{_files_hash(folder)}" if folder is not None else f"hub:{name}"
    key = (str(folder.resolve()) if folder else str(name), identity)   # files edited in place: reloaded
    if key in _LOADED:
        return _LOADED[key]
    if folder is not None:
        tok = Tokenizer(folder.name, identity, str(folder), _load_folder(folder))
    else:
        tok = Tokenizer(str(name), identity, str(name), _load_hub(str(name), data_dir))
    tok.hf.model_max_length = 1 << 60   # we count lengths; no truncation, no "longer than" warning
    if not getattr(tok.hf, "is_fast", False):
        raise DataError("only fast (Rust) tokenizers are supported; this one is slow", file=tok.source)
    check_vocabulary(tok.hf, tok.source)
    _LOADED[key] = tok
    return tok


def _load_hub(name: str, data_dir: Path | None):
    from .hub import hub_reachable
    ok, why = hub_reachable()
    if not ok:
        models = Path(data_dir) / "models" if data_dir else None
        known = sorted(p.name for p in models.iterdir()) if models and models.is_dir() else []
        raise DataError(f"tokenizer {name!r} is neither a local folder nor a name in {models} "
                        f"(have {known}), and the Hugging Face hub is unreachable ({why})")
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise DataError(f"cannot load tokenizer {name!r} from the hub ({type(e).__name__}: {e})") from e
