"""Plots, result files and the report index (reads records and results, never engines)."""
