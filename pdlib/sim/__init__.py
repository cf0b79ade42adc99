"""The exclusive-batching simulator: pdlib's digital twin of a real engine (see ``core`` for
the counting convention). ``simulate`` is the fast event-driven core (``events`` +
``columns``), ``simulate_stepwise`` the literal step loop, ``samplers`` the length sources;
the engine-protocol wrapper is ``pdlib.engines.sim.SimEngine``."""

from ..records import COLUMNS
from .columns import RaggedIds
from .core import simulate
from .events import DEFAULT_TIMING
from .result import SimResult
from .samplers import Constant, Empirical, GammaInt, Geometric, InOrder, Sampler, as_sampler
from .stepwise import simulate_stepwise

__all__ = [
    "COLUMNS",
    "DEFAULT_TIMING",
    "Constant",
    "Empirical",
    "GammaInt",
    "Geometric",
    "InOrder",
    "RaggedIds",
    "Sampler",
    "SimResult",
    "as_sampler",
    "simulate",
    "simulate_stepwise",
]
