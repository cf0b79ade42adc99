"""Length samplers of the simulator: where each request's input and output lengths come from.

``draw(rng, n)`` gives n lengths; ``size`` is the length of a finite source (``InOrder``), None
when unbounded. ``as_sampler`` turns the plain values ``simulate`` accepts into a sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import theory


class Sampler:
    """A source of lengths: ``draw(rng, n)`` -> int64 array; ``size`` is None when unbounded."""

    size: int | None = None

    def draw(self, rng, n: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Geometric(Sampler):
    """Geometric(p) on {1, 2, ...} (mean 1/p): the theory's output lengths."""

    p: float

    def __post_init__(self):
        theory._check_p(self.p)

    def draw(self, rng, n):
        return rng.geometric(self.p, size=n).astype(np.int64)


@dataclass(frozen=True)
class Constant(Sampler):
    value: int

    def __post_init__(self):
        if not (float(self.value) >= 0 and float(self.value) == int(self.value)):
            raise ValueError(f"constant length must be an integer >= 0, got {self.value!r}")

    def draw(self, rng, n):
        return np.full(n, int(self.value), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Empirical(Sampler):
    """Resampled with replacement from ``values`` (e.g. a dataset's lengths)."""

    values: np.ndarray

    def __post_init__(self):
        v = np.asarray(self.values)
        if v.size == 0:
            raise ValueError("empirical lengths must not be empty")
        object.__setattr__(self, "values", _int_lengths(v, "empirical lengths"))

    def draw(self, rng, n):
        return self.values[rng.integers(0, self.values.size, size=n)]


@dataclass(frozen=True, eq=False)
class InOrder(Sampler):
    """Exactly ``values``, in order (a workload's lengths); a finite stream."""

    values: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "values", _int_lengths(np.asarray(self.values), "lengths"))

    @property
    def size(self):
        return int(self.values.size)

    def draw(self, rng, n):
        raise RuntimeError("InOrder lengths are not drawn")


@dataclass(frozen=True)
class GammaInt(Sampler):
    """Gamma with the given mean and variance, rounded to integers >= 1 (input lengths
    with a variance, ``pdlib simulate --var-input``); var = 0 gives the constant."""

    mean: float
    var: float

    def __post_init__(self):
        theory._check_pos("mean", self.mean)
        theory._check_nonneg("var", self.var)

    def draw(self, rng, n):
        if self.var == 0:
            return np.full(n, max(1, round(self.mean)), dtype=np.int64)
        shape, scale = self.mean**2 / self.var, self.var / self.mean
        return np.maximum(1, np.rint(rng.gamma(shape, scale, size=n))).astype(np.int64)


def _int_lengths(v: np.ndarray, what: str) -> np.ndarray:
    if v.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    if v.size and (np.any(~np.isfinite(v.astype(float))) or np.any(v < 0) or np.any(v != np.floor(v))):
        raise ValueError(f"{what} must be finite integers >= 0")
    return v.astype(np.int64)


def as_sampler(x, what: str) -> Sampler:
    """int -> Constant, array/list -> Empirical (with replacement), Sampler -> itself."""
    if isinstance(x, Sampler):
        return x
    if isinstance(x, (int, np.integer)) or (isinstance(x, float) and float(x).is_integer()):
        return Constant(int(x))
    if isinstance(x, (list, tuple, np.ndarray)):
        return Empirical(np.asarray(x))
    raise ValueError(
        f"{what} must be an int (constant), an array (resampled) or a pdlib.sim sampler, got {x!r}"
    )
