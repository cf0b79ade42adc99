"""Moved to ``pdlib.report.serving`` (every figure lives in ``pdlib.report``); kept as an alias
until ``pdlib.cli.serving`` and the serving tests import from there."""
from pdlib.report.serving import load_run, plot_run, plot_timeline, summary_table

__all__ = ["load_run", "plot_run", "plot_timeline", "summary_table"]
