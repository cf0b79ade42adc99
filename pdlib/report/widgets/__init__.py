"""Interactive controls for the notebooks (ipywidgets): 02's k* explorer, 03's memory explorer,
04's budget explorer. Callbacks are plain functions of the lower layers (``kstar_view``,
``memory_view``: ``pdlib.theory``; ``pdlib.budget.budget_rows``), so tests call them directly or
drive them by setting widget values, and ``tests/test_browser.py`` drags them in JupyterLab.
Under papermill / ``pdlib run`` (``PDLIB_NONINTERACTIVE=1``) or outside a kernel each explorer
renders statically instead (the same numbers and figure; 04: the table)."""
from __future__ import annotations

from ._base import Explorer, Rendered, is_interactive
from .budget import BudgetExplorer, budget_explorer
from .kstar import KStarExplorer, kstar_explorer, kstar_view, measured_points
from .memory import MemoryExplorer, measured_cycles, memory_explorer, memory_view

__all__ = ["BudgetExplorer", "Explorer", "KStarExplorer", "MemoryExplorer", "Rendered", "budget_explorer",
           "is_interactive", "kstar_explorer", "kstar_view", "measured_cycles", "measured_points",
           "memory_explorer", "memory_view"]
