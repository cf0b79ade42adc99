"""What every explorer shares: the interactive/static switch, the widget shell (controls ->
a plain callback -> one HTML output), the static rendering papermill shows, number formatting
and figures embedded as PNG."""
from __future__ import annotations

import base64
import html
import io
import math
import os
import sys


def is_interactive() -> bool:
    """True in a live Jupyter kernel that is not being driven by papermill/``pdlib run``."""
    if os.environ.get("PDLIB_NONINTERACTIVE"):
        return False
    if "papermill" in sys.modules:
        return False
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def fmt(x, unit: str = "") -> str:
    """3 significant digits, thousands separators from 1,000 up; None/NaN as a dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    x = float(x)
    if abs(x) >= 1000:
        s = f"{x:,.0f}"
    elif x == int(x) and abs(x) < 1000:
        s = f"{int(x)}"
    else:
        s = f"{x:.3g}"
    return f"{s} {unit}".rstrip()


def figure_html(fig, alt: str) -> str:
    """``fig`` (a matplotlib Figure, not pyplot's) as an inline PNG ``<img>``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def rows_html(rows, css_class: str) -> str:
    """A two-or-more-column HTML table from ``(label, value, ...)`` rows (values already text)."""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{css_class}" style="border-collapse:collapse">{body}</table>'


class Rendered:
    """The static rendering of an explorer (headless runs): the same HTML the widget shows, and
    the callback's ``view`` dict."""

    def __init__(self, html_: str, view: dict):
        self.html, self.view = html_, view

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {', '.join(f'{k}={v!r}' for k, v in self.view.items() if k in _SHORT)}>"


_SHORT = ("N", "k_star", "k_star_lengths", "k", "theta", "E_X0", "E_Xmax")


class Explorer:
    """Widget shell: ``controls`` (name -> ipywidget) and ``fixed`` (other arguments) feed
    ``view_fn`` (a plain function of pdlib) whose dict ``html_fn`` turns into ``output.value``.
    A bad combination of values shows its one-line error in the output instead of a traceback.
    ``settings_fn`` completes the caller's values (defaults, measured points read once)."""

    controls: dict
    fixed: dict
    layout: tuple         # rows of control names
    view_fn = html_fn = settings_fn = None     # staticmethods in each explorer

    @classmethod
    def make(cls, interactive=None, **values):
        """The explorer when interactive (None: ``is_interactive()``), else its static rendering
        (``Rendered``: the same numbers and figure)."""
        if interactive is None:
            interactive = is_interactive()
        if interactive:
            return cls(**values)
        view = cls.view_fn(**cls.settings_fn(**values))
        return Rendered(cls.html_fn(view), view)

    def _build(self):
        import ipywidgets as w
        self.output = w.HTML()
        self.output.add_class("pdlib-explorer-output")
        for c in self.controls.values():
            c.observe(self._changed, names="value")
        rows = [w.HBox([self.controls[k] for k in row]) for row in self.layout]
        self.widget = w.VBox([*rows, self.output])
        self.widget.add_class("pdlib-explorer")
        self.refresh()

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def compute(self, **values) -> dict:
        return self.view_fn(**values, **self.fixed)

    def render(self, view: dict) -> str:
        return self.html_fn(view)

    def refresh(self) -> dict | None:
        try:
            self.view = self.compute(**self.values())
            self.error = None
            self.output.value = self.render(self.view)
        except ValueError as e:
            self.view, self.error = None, str(e)
            self.output.value = f'<p class="pdlib-explorer-error"><b>cannot compute:</b> {html.escape(str(e))}</p>'
        return self.view

    def _changed(self, change):
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def result_section(source, name: str) -> dict | None:
    """Section ``name`` of a run's results: an experiment result (its ``to_json()``), the section
    itself, the whole ``{dataset}_results.json`` dict, or the path of that file. None: none given."""
    if source is None:
        return None
    if hasattr(source, "to_json"):
        return source.to_json()
    if isinstance(source, (str, os.PathLike)):
        from pathlib import Path

        from pdlib.experiments.result import read_json
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"results file {path} not found (the run's {{dataset}}_results.json)")
        obj = read_json(path, {}) or {}
        if name not in obj:
            raise ValueError(f"results file {path} has no section {name!r} (sections: {sorted(obj)})")
        return obj[name]
    if isinstance(source, dict):
        return source.get(name, source)
    raise ValueError(f"measured: expected a result, its JSON dict or a results file path, got {type(source).__name__}")


def log_slider(w, value: float, description: str, lo: int = -12, hi: int = 2, span: int = 3):
    """A FloatLogSlider (base 10) around ``value`` (``span`` decades either side, within
    10^lo..10^hi; a value <= 0, e.g. a slope clipped to 0 by the fit, starts at 10^lo), updated
    on release."""
    v = float(value)
    e = math.log10(v) if v > 0 else lo
    mn, mx = max(lo, math.floor(e) - span), min(hi, math.ceil(e) + span)
    return w.FloatLogSlider(value=max(v, 10.0 ** lo), base=10, min=mn, max=max(mx, mn + 1), step=0.01,
                            description=description, readout_format=".3g", continuous_update=False)
