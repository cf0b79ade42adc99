"""Readable reports (issue #17 item 6): every table goes through ``pdlib.report.style`` — units in
headers, 3 significant digits, thousands separators, integers as integers, no 'nan', a reason
for a GPU x model pair that does not fit, wide tables split and scrolling — and every figure has
axis units and a caption. Checked on real results: a small simulator run of the k sweep and of
the memory cycles, and seed 004's budget tables; the HTML is exported by the grid's own
``export_html`` (nbconvert, no input)."""
from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pdlib import budget, theory
from pdlib.experiments import memory_cycles as mc
from pdlib.experiments import sweep
from pdlib.report import distributions, plots, style, tables

TIMING = theory.TimingModel(0.05, 1e-5, 0.01, 1e-4)
INT = re.compile(r"^[+-]?\d{1,3}(,\d{3})*$")
DEC = re.compile(r"^[+-]?(\d+\.\d+|0\.\d+)$")
SCI = re.compile(r"^[+-]?\d(\.\d{1,2})?e[+-]?\d+$")


class _Cells(HTMLParser):
    """Text of every <td>, <th> and <caption> of an HTML page."""

    def __init__(self):
        super().__init__()
        self.td, self.th, self.caption, self._tag, self._buf = [], [], [], None, []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th", "caption"):
            self._tag, self._buf = tag, []

    def handle_endtag(self, tag):
        if tag == self._tag:
            getattr(self, tag).append("".join(self._buf).strip())
            self._tag = None

    def handle_data(self, data):
        if self._tag:
            self._buf.append(data)


def cells(html: str) -> _Cells:
    p = _Cells()
    p.feed(html)
    return p


def significant_digits(s: str) -> int:
    digits = s.lstrip("+-").split("e")[0].replace(".", "").lstrip("0")
    return len(digits)


def assert_readable_number(s: str):
    """A numeric cell is an integer with separators, a decimal of at most 3 significant digits,
    or a 3-digit scientific form below 1e-3."""
    if INT.match(s):
        return
    if DEC.match(s):
        assert significant_digits(s) <= 3, s
        return
    assert SCI.match(s), f"not a readable number: {s!r}"


def _numeric_cells(html):
    return [t for t in cells(html).td if t and re.fullmatch(r"[+\-\d.,e]+", t) and any(ch.isdigit() for ch in t)]


@pytest.fixture(scope="module")
def kstar_exp():
    from pdlib.engines import get_engine
    from pdlib.workload import Workload
    rng = np.random.default_rng(3)
    wl = Workload.from_lengths("geo", rng.integers(20, 300, 240), rng.geometric(0.03, 240))
    return wl, sweep.kstar_experiment(get_engine("sim", timing=TIMING), wl, TIMING, N=8, n_points=4,
                                      kstar_update_interval=8, offline_p_multiplier=2)


@pytest.fixture(scope="module")
def memory_exp():
    from pdlib.engines import get_engine
    from pdlib.workload import Workload
    rng = np.random.default_rng(4)
    wl = Workload.from_lengths("geo", rng.integers(20, 200, 300), rng.geometric(0.05, 300))
    return mc.memory_experiment(get_engine("sim", timing=TIMING), wl, N=8, k=3, timing=TIMING, warmup=2,
                                mc_requests=400)


@pytest.mark.parametrize("x, shown", [
    (42666.666667, "42,667"), (110429.84, "110,430"), (3, "3"), (np.int64(12345), "12,345"), (12.0, "12"),
    (17.179869, "17.2"), (0.0012345, "0.00123"), (2.49e-5, "2.49e-5"), (-3.14159, "-3.14"), (0.99987, "1.00"),
    (999.6, "1,000"), (None, "—"), (float("nan"), "—"), (float("inf"), "—"), (True, "yes"), (np.bool_(False), "no"),
    ("a reason", "a reason")])
def test_fmt_rules(x, shown):
    assert style.fmt(x) == shown


def test_fmt_signed_and_headers_from_suffixes():
    assert style.fmt(2.5, signed=True) == "+2.5" and style.fmt(-2.5, signed=True) == "-2.5"
    assert style.fmt(0, signed=True) == "0"
    assert style.auto_header("requests_per_s") == "requests/s"
    assert style.auto_header("kv_cache_gb") == "kv cache (GB)" and style.auto_header("error_pct") == "error (%)"
    assert style.auto_header("k") == "k"


def test_sweep_table_of_a_real_run(kstar_exp):
    _, exp = kstar_exp
    df = tables.sweep_table(exp)
    t = style.table(df)
    html = t.to_html()
    assert "nan" not in html.lower() and "None" not in html
    c = cells(html)
    heads = " | ".join(c.th)
    assert "(requests/s)" in heads and "refill size k (requests)" in heads and "simulator vs engine (%)" in heads
    nums = _numeric_cells(html)
    assert len(nums) > 20
    for s in nums:
        assert_readable_number(s)
    # the raw value of the engine throughput has more digits than the display
    raw = df["requests_per_s"].iloc[0]
    assert style.fmt(raw) in c.td and f"{raw}" not in html
    # 13 columns: split in column groups of at most 8, each repeating k, each in a scrolling box
    assert len(t.groups()) == 2 and all(g.shape[1] <= 8 for g in t.groups())
    assert html.count('class="pdlib-table" style="overflow-x: auto') == 2 and "columns 9–" in html
    assert any("Look at" in x for x in c.caption)
    # the simulator error carries its sign
    errs = [style.fmt(v, signed=True) for v in df["sim_error_pct"] if v and math.isfinite(v)]
    assert all(e in c.td for e in errs)


def test_memory_tables_of_a_real_run(memory_exp):
    for df in (tables.memory_errors_table(memory_exp), tables.memory_columns_table(memory_exp),
               tables.validity_table(memory_exp), tables.audit_table(memory_exp),
               tables.attribution_table(memory_exp)):
        html = style.table(df, max_cols=10).to_html()
        assert "nan" not in html.lower(), df.index.name
        for s in _numeric_cells(html):
            assert_readable_number(s)
        assert any("Look at" in x for x in cells(html).caption)
    heads = " | ".join(cells(style.table(tables.memory_errors_table(memory_exp), max_cols=10).to_html()).th)
    assert "signed error (%)" in heads and "theory (KV tokens)" in heads and "error 95 % CI lo (%)" in heads
    js = tables.memory_errors_table(memory_exp.to_json())           # the results file reads the same
    assert style.table(js).to_html().count("<td") == style.table(tables.memory_errors_table(memory_exp)).to_html().count("<td")


def test_budget_table_gives_the_reason_a_pair_does_not_fit():
    df = tables.budget_table(budget.all_pairs(dtype="fp16"), dtype="fp16")
    no = df.loc[("rtx4080-laptop", "qwen2.5-7b-instruct")]
    assert no["fits"].startswith("does not fit: ") and "GiB" in no["fits"] and "rtx4080-laptop" in no["fits"]
    assert (df["fits"] == "yes").sum() > 0 and df.columns[0] == "fits"
    html = style.table(df).to_html()
    assert "nan" not in html.lower()
    assert "does not fit: qwen2.5-7b-instruct in fp16 needs" in html
    heads = " | ".join(cells(html).th)
    assert "M_max: GPU memory (GB)" in heads and "KV cache per token (bytes)" in heads and "(requests)" in heads
    seed = style.table(tables.budget_table(budget.seed_vs_corrected())).to_html()
    assert "42,667" in seed and "196,608" in seed and "42666" not in seed       # seed 004's eta, readable
    for s in _numeric_cells(seed):
        assert_readable_number(s)


def test_report_html_export_keeps_the_styles(tmp_path, kstar_exp):
    """The grid's own export (nbconvert, no input) keeps the scroll box and the CSS."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from pdlib.grid import export_html
    _, exp = kstar_exp
    t = style.table(tables.sweep_table(exp))
    cell = new_code_cell("style.table(tables.sweep_table(exp))", outputs=[
        new_output("execute_result", data={"text/html": t.to_html(), "text/plain": str(t)}, execution_count=1)])
    nb = new_notebook(cells=[cell])
    nbformat.write(nb, tmp_path / "r.ipynb")
    export_html(tmp_path / "r.ipynb", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "style.table(" not in page                      # no input
    assert 'class="pdlib-table" style="overflow-x: auto' in page and "white-space: normal" in page
    assert "nan" not in " ".join(cells(page).td).lower()


def test_every_figure_has_units_and_a_caption(kstar_exp, memory_exp):
    wl, exp = kstar_exp
    figs = [plots.throughput_vs_k(exp.sweep, k_star=exp.k_star, k_hat=exp.k_hat, sim_rows=exp.sim,
                                  theory=exp.theory_curve, online_rps=exp.online["requests_per_s"]),
            plots.kstar_convergence(exp.online["history"], k_star_offline=exp.k_star, p_offline=exp.p_offline),
            plots.timeline(exp.timeline(max_steps=200)),
            plots.length_histogram(wl.output_lens, what="output", dataset="geo"),
            plots.memory_validation(memory_exp.cycles, memory_exp.theory, memory_exp.bound),
            plots.budget_figure(budget.seed_vs_corrected()),
            distributions.length_distributions(wl.input_lens, wl.output_lens, dataset="geo"),
            distributions.throughput_facets(exp.sweep, k_star=exp.k_star, k_hat=exp.k_hat, sim_rows=exp.sim,
                                            theory=exp.theory_curve)]
    for fig in figs:
        assert any("Look at:" in t.get_text() for t in fig.texts), fig
        for ax in fig.axes:
            if ax.get_visible() and ax.get_xlabel():
                assert re.search(r"\(.+\)", ax.get_xlabel() + ax.get_ylabel()), (ax.get_xlabel(), ax.get_ylabel())


def test_seaborn_draws_the_distributions_and_the_facets(kstar_exp, tmp_path):
    wl, exp = kstar_exp
    fig = distributions.length_distributions(wl.input_lens, wl.output_lens, dataset="geo")
    hist, ecdf = fig.axes[:2]
    assert hist.get_xscale() == "log" and ecdf.get_xscale() == "log"
    # the output ECDF ends at 1 and the geometric line of the same mean is drawn beside it
    assert any(ln.get_label().startswith("geometric, same mean") for ln in ecdf.lines)
    assert max(float(np.max(ln.get_ydata())) for ln in ecdf.lines) == pytest.approx(1.0)
    x = np.array([1, 2, 10])
    assert distributions.geometric_cdf(x, 20) == pytest.approx(1 - (1 - 1 / 20) ** x)
    g = distributions.throughput_facets(exp.sweep, k_star=exp.k_star, k_hat=exp.k_hat, sim_rows=exp.sim,
                                        theory=exp.theory_curve)
    titles = [a.get_title() for a in g.axes if a.get_title()]
    assert titles[:3] == ["end to end (requests/s)", "steady state, 95 % CI (requests/s)", "% of the best measured k"]
    # the % panel puts the best measured k at 100
    best = max(r["requests_per_s"] for r in exp.sweep)
    k_best = next(r["k"] for r in exp.sweep if r["requests_per_s"] == best)
    pct = [ln for ln in g.axes[2].lines if len(ln.get_xdata()) and k_best in list(ln.get_xdata())]
    assert any(100.0 in np.round(ln.get_ydata(), 9) for ln in pct)
    paths = plots.save_figure(g, tmp_path, "throughput_facets", "geo")
    assert [p.name for p in paths] == ["geo_throughput_vs_k_facets.pdf", "geo_throughput_vs_k_facets.png"]


def test_table_rejects_what_is_not_a_frame():
    with pytest.raises(TypeError, match="DataFrame"):
        style.table([1, 2])
    assert "—" in style.table(pd.DataFrame({"x": [1.0, None]})).to_html()
