"""The memory-breakdown profiler (seed 002): where the memory of one ``generate`` call goes.

``profile`` (the hf path) and ``native`` (pdlib's native engine) measure and return one
``result.Breakdown`` (the JSON's owner); ``memory`` holds the probes, ``layers`` the per-layer
torch.profiler table, ``model`` the prompt ids, ``compare`` the calculator vs the
measurement, ``sweep`` notebook 05's grid and tables (its figures: ``pdlib.report.breakdown``).
Imports only downward: theory, models, records, policy, engines, workload. No torch at import.
"""
from .compare import compare_estimates, theory_estimates
from .profile import profile_breakdown, profile_memory
from .result import COMPONENTS, SCHEMA, Breakdown, null_paths

__all__ = ["COMPONENTS", "SCHEMA", "Breakdown", "compare_estimates", "null_paths", "profile_breakdown",
           "profile_memory", "theory_estimates"]
