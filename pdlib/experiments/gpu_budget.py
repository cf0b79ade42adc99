"""GPU budget (notebook 04): seed 004's chain from ``pdlib.budget`` for the seed's stated
numbers, the corrected cases, a chosen GPU x model, and every pair of the built-in tables,
as a ``BudgetResult``. The tables themselves are ``pdlib.budget``'s (the widgets in
``pdlib.report.widgets`` call that module, not this one); the figure is
``pdlib.report.plots.budget_figure``."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from pdlib import budget
from pdlib.experiments.result import LIVE, jsonable


@dataclass
class BudgetResult:
    """Notebook 04's result. ``to_json()`` is ``gpu_budget_results.json``: the seed-vs-corrected
    table as records (``all_pairs``, every GPU x model, stays out of it)."""
    params: dict                                  # gpu, model, dtype, mean/p95 tokens, sla_ms, B_MAX
    seed_vs_corrected: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)
    all_pairs: pd.DataFrame = field(default=None, repr=False, metadata=LIVE)

    def to_json(self) -> dict:
        return jsonable({"seed_vs_corrected": self.seed_vs_corrected.reset_index().to_dict(orient="records")})


def budget_experiment(gpu="rtx4080", model="qwen3-1.7b", dtype="fp16", mean_tokens=500, p95_tokens=1000,
                      sla_ms=1000.0, B_MAX=128, *, with_all_pairs: bool = True) -> BudgetResult:
    """Seed 004 as stated beside the corrected RTX 4080 cases and the chosen GPU x model, and
    (``with_all_pairs``) every GPU x model of the built-in tables."""
    kw = {"dtype": dtype, "mean_tokens": mean_tokens, "p95_tokens": p95_tokens, "sla_ms": sla_ms, "B_MAX": B_MAX}
    return BudgetResult(params={"gpu": gpu, "model": model, **kw},
                        seed_vs_corrected=budget.seed_vs_corrected(gpu=gpu, model=model, **kw),
                        all_pairs=budget.all_pairs(**kw) if with_all_pairs else None)
