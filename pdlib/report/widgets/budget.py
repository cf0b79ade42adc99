"""Notebook 04's budget explorer: dropdowns and sliders driving ``pdlib.budget.budget_rows``."""
from __future__ import annotations

from pdlib import budget

from ._base import is_interactive


class BudgetExplorer:
    """Dropdowns (GPU, model, dtype) and sliders (mean/p95 request tokens, SLA, B_MAX) driving
    ``pdlib.budget.budget_rows``; ``output.value`` holds the table as HTML."""

    def __init__(self, gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                 sla_ms=1000.0, B_MAX=128):
        import ipywidgets as w

        from pdlib.hardware import gpu_names
        from pdlib.models import model_names
        self.controls = {
            "gpu": w.Dropdown(options=gpu_names(), value=gpu, description="GPU"),
            "model": w.Dropdown(options=model_names(), value=model, description="model"),
            "dtype": w.Dropdown(options=["fp16", "bf16", "fp32", "fp8"], value=dtype, description="dtype"),
            "mean_tokens": w.IntSlider(value=int(mean_tokens), min=16, max=32768, step=16,
                                       description="mean tokens"),
            "p95_tokens": w.IntSlider(value=int(p95_tokens), min=16, max=131072, step=16, description="p95 tokens"),
            "sla_ms": w.FloatSlider(value=float(sla_ms), min=1.0, max=5000.0, step=1.0, description="SLA (ms)"),
            "B_MAX": w.IntSlider(value=int(B_MAX), min=1, max=1024, description="B_MAX"),
        }
        self.output = w.HTML()
        self.output.add_class("pdlib-explorer-output")
        for c in self.controls.values():
            c.observe(self._changed, names="value")
        self.widget = w.VBox([w.HBox([self.controls[k] for k in ("gpu", "model", "dtype")]),
                              w.HBox([self.controls[k] for k in ("mean_tokens", "p95_tokens")]),
                              w.HBox([self.controls[k] for k in ("sla_ms", "B_MAX")]), self.output])
        self.widget.add_class("pdlib-explorer")
        self.refresh()

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def refresh(self):
        self.table = budget.budget_rows(**self.values())
        self.output.value = self.table.to_html()
        return self.table

    def _changed(self, change):
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def budget_explorer(interactive=None, **values):
    """A ``BudgetExplorer`` when interactive (None: ``is_interactive()``), else the static table."""
    if interactive is None:
        interactive = is_interactive()
    if interactive:
        return BudgetExplorer(**values)
    return budget.budget_rows(**values)
