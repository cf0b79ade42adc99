"""Experiments: profiling, k sweeps, memory cycles, breakdown (compose data, engines, theory)."""
