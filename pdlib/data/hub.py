"""Hugging Face hub access for hub datasets: a quick reachability check, then ``datasets``.

With ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or when the hub does not answer within
``PDLIB_HUB_TIMEOUT`` seconds (default 5), loading fails at once with ``HubUnavailable``
naming the dataset, its hub id and how to point at a local copy.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request

from .errors import HubUnavailable

_TRUE = {"1", "true", "yes", "on"}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float | None = None) -> tuple[bool, str]:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return False, f"{var} is set"
    timeout = float(os.environ.get("PDLIB_HUB_TIMEOUT", "5")) if timeout is None else timeout
    url = hub_endpoint() + "/api/datasets?limit=1"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True, ""
    except urllib.error.HTTPError:
        return True, ""               # the server answered
    except (OSError, ValueError) as e:   # URLError, timeout, DNS, refused, bad endpoint
        reason = getattr(e, "reason", e)
        return False, f"{hub_endpoint()} not reachable: {reason}"


def offline_message(name: str, hub_id: str, split, local: str, why: str) -> str:
    return (f"dataset {name!r}: no local copy, and the Hugging Face hub is unavailable ({why}). "
            f"Its hub id is {hub_id}" + (f" (split {split})" if split else "") +
            f". Point at a local copy with path='FILE_OR_FOLDER' (JSON/JSONL/parquet rows in the hub's format), "
            f"or set PDLIB_DATA_DIR to a folder holding {local}.")


def load_hub_rows(name: str, hub_id: str, config, split: str, local: str):
    """The hub rows (a ``datasets.Dataset``, iterable of dicts), or HubUnavailable at once."""
    ok, why = hub_reachable()
    if not ok:
        raise HubUnavailable(offline_message(name, hub_id, config or split, local, why))
    import datasets
    try:
        return datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:
        raise HubUnavailable(offline_message(name, hub_id, config or split, local,
                                             f"datasets.load_dataset failed: {type(e).__name__}: {e}")) from e


def download_hub_file(name: str, hub_id: str, filename: str, local: str):
    """One raw file of a hub dataset repo (e.g. ShareGPT's JSON), through huggingface_hub."""
    ok, why = hub_reachable()
    if not ok:
        raise HubUnavailable(offline_message(name, hub_id, None, local, why))
    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(hub_id, filename, repo_type="dataset")
    except Exception as e:
        raise HubUnavailable(offline_message(name, hub_id, None, local,
                                             f"download of {filename} failed: {type(e).__name__}: {e}")) from e
