"""Shared fixtures: the real data folder, a tiny random Qwen3 saved to disk, markers."""
from __future__ import annotations

from pathlib import Path

import pytest

from pdlib import paths
from pdlib.models import TINY_QWEN3, save_random_qwen3  # noqa: F401  (TINY_QWEN3 is imported by tests)

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    return paths.data_dir() or ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not d.is_dir():
        pytest.fail(f"real data folder not found at {d}; set PDLIB_DATA_DIR (see ../shared/data/README.md)")
    return d


@pytest.fixture(scope="session")
def qwen3_dir(data_dir) -> Path:
    """Qwen3 tokenizer (vocab.json + merges.txt) and the Qwen3-1.7B config."""
    return data_dir / "models" / "qwen3-1.7b"



@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory) -> Path:
    """A 2-layer random-weight Qwen3 saved with save_pretrained (safetensors), fp32."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return save_random_qwen3(tmp_path_factory.mktemp("tiny-qwen3"), seed=0)


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def one_cpu_thread():
    """One torch intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures(
    "one_cpu_thread")``): tiny models gain nothing from more, memory figures do not depend on
    threads, and on a busy shared CPU one thread is ~10x faster."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def isolated_cache_dir(tmp_path_factory):
    """A fresh ``PDLIB_CACHE_DIR`` for a test module (``pytestmark = pytest.mark.usefixtures(
    "isolated_cache_dir")``), so tokenized-workload caches never leak between modules."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PDLIB_CACHE_DIR", str(tmp_path_factory.mktemp("wl-cache")))
    yield
    mp.undo()
