"""Experiments: profiling, k sweeps, memory cycles, GPU budget (compose data, engines, theory; return dataclasses)."""
