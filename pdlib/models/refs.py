"""Models named without a ``params/models`` YAML: a Hugging Face id (``Qwen/Qwen2.5-7B-Instruct``)
or a local model folder holding ``config.json`` (``../shared/data/models/qwen3-1.7b``), turned
into the spec dict such a YAML would give (``pdlib.params.load_spec`` falls back to it), and the
one folder name under ``outputs/`` for each (``model_folder``)."""
from __future__ import annotations

import re
from pathlib import Path

from .specs import _looks_like_hub_id as looks_like_hub_id
from .specs import load_config_path


def looks_like_hf_id(ref) -> bool:
    """``org/name`` as the Hugging Face hub spells a repository (not a relative path: no leading
    ``.``, ``/`` or ``~``, no ``--`` or ``..``, which the hub forbids)."""
    return (isinstance(ref, str) and looks_like_hub_id(ref) and "--" not in ref and ".." not in ref
            and not Path(ref).expanduser().exists() and bool(re.fullmatch(r"[\w.-]+/[\w.-]+", ref)))


def model_folder(ref: str) -> str:
    """The one folder name under ``outputs/<grid>/<dataset>/`` for a model reference: a params
    name as it is, a Hugging Face id ``org/name`` as ``org--name`` (the hub cache's spelling), a
    model folder by its own name (other characters as ``_``)."""
    if looks_like_hf_id(ref):
        return ref.replace("/", "--")
    if "/" in ref or ref.startswith((".", "~")):     # a folder: its name, in letters, digits and ._+-
        return re.sub(r"[^A-Za-z0-9._+-]", "_", Path(ref).expanduser().resolve().name).lstrip("._") or "model"
    return ref


def model_spec_from_ref(ref) -> dict | None:
    """A model spec (as a ``params/models`` YAML would give) for a model folder holding
    ``config.json`` (pretrained when it has ``*.safetensors``/``*.bin`` weights, else random
    weights from its config; the folder as its tokenizer) or a Hugging Face id
    (pretrained weights, its own tokenizer); None when ``ref`` is neither."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    p = Path(ref).expanduser()
    if p.is_dir():
        conf, _ = load_config_path(p)       # errors name the file
        p = p.resolve()
        has_weights = any(p.glob("*.safetensors")) or any(p.glob("pytorch_model*.bin"))
        spec = {"name": p.name, "config_path": str(p), "weights": "pretrained" if has_weights else "random",
                "description": f"model folder {p} ({'its weights' if has_weights else 'random weights from config.json'})"}
        spec["tokenizer"] = str(p)     # a folder without tokenizer files: the loader says so, naming it
        dtype = conf.get("torch_dtype") or conf.get("dtype")
        if isinstance(dtype, str) and dtype in ("float32", "float16", "bfloat16"):
            spec["dtype"] = dtype
    elif looks_like_hf_id(ref):
        spec = {"name": model_folder(ref), "hf_id": ref, "tokenizer": ref, "weights": "pretrained",
                "description": f"Hugging Face model {ref} (pretrained weights and tokenizer from the hub or its cache)"}
    else:
        return None
    spec["_file"] = None
    spec["_ref"] = ref
    return spec
