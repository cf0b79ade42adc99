"""Notebook 03's memory explorer: N, theta = k/N and the length source (Geometric(p) outputs with
mean input mu_L, or the run's real paired lengths) -> the paper's E[X0], kappa, E[Xmax], the OOM
bound and the memory-safe N* (``theory.memory``), with the length-aware model
(``theory.memory_model_lengths``) beside them and the run's measured cycles (its result or
results JSON) when N and k are the run's. ``memory_view`` is the plain callback."""
from __future__ import annotations

import numpy as np

from pdlib import theory

from ._base import Explorer, figure_html, fmt, log_slider, result_section, rows_html

SOURCES = {"geometric": "Geometric(p) outputs, mean input mu_L", "run": "the run's paired lengths"}


def measured_cycles(source) -> dict | None:
    """The run's steady-state cycles from a ``MemoryCyclesResult``, its ``memory`` JSON section or
    the results file: N, k, mean X0 / Xmax / supY (KV tokens) with their 95 % intervals."""
    if isinstance(source, dict) and "X0" in source and "N" in source:
        return source                                   # already these numbers
    sec = result_section(source, "memory")
    if not sec or not sec.get("measured"):
        return None
    th, ci = sec.get("theory") or {}, sec.get("measured_ci") or {}
    return {"N": int(th["N"]), "k": int(th["k"]), **{q: float(sec["measured"][q]) for q in ("X0", "Xmax", "supY")},
            "ci": {q: ci.get(q) for q in ("X0", "Xmax", "supY")}}


def memory_view(N, theta, p, mu_L, var_L=0.0, *, source="geometric", input_lens=None, output_lens=None,
                capacity_tokens=None, eps=0.01, measured=None, seed=0) -> dict:
    """The explorer's numbers (KV tokens) for one setting. k = round(theta*N) in 1..N-1 and both
    models use theta = k/N. Paper (Prop. 2, 3): E[X0] = N*D(theta), kappa = 1/(p^2 mu_L),
    E[Xmax] ~ E[X0] + kappa; OOM: P(sup Y > x) <= exp(-2|d|x/v) at the headroom x = C - E[X0];
    N* = floor((C - kappa ln(1/eps))/D(theta)) and its CLT form. With ``source="run"`` p, mu_L and
    Var_L come from the lengths (1/mean output, mean and variance of the inputs)."""
    N = int(N)
    if N < 2:
        raise ValueError(f"N must be an integer >= 2 (k = theta*N in 1..N-1), got {N}")
    if not 0 < float(theta) < 1:
        raise ValueError(f"theta must be in (0, 1), got {theta}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    k = int(np.clip(round(float(theta) * N), 1, N - 1))
    if source == "run":
        if input_lens is None or output_lens is None:
            raise ValueError("source 'run' needs the run's input_lens and output_lens")
        inps, outs = np.asarray(input_lens, float), np.maximum(np.asarray(output_lens, float), 1)
        p, mu_L, var_L = float(1.0 / outs.mean()), float(inps.mean()), float(inps.var())
        la = theory.memory_model_lengths(N, k, inps, outs, seed=seed)
    else:
        la = theory.memory_model_lengths(N, k, p=float(p), mu_L=float(mu_L), var_L=float(var_L), seed=seed)
    paper = theory.memory_model(N, k, float(p), float(mu_L), float(var_L))
    view = {"N": N, "k": k, "theta": k / N, "source": source, "p": float(p), "mu_L": float(mu_L),
            "var_L": float(var_L), **{q: paper[q] for q in ("E_X0", "kappa", "E_Xmax", "drift", "variance")},
            "E_X0_lengths": la.E_X0, "E_Xmax_lengths": la.E_Xmax, "E_supY_lengths": la.E_supY,
            "se_supY_lengths": la.se_supY}
    if capacity_tokens is not None:
        C = float(capacity_tokens)
        head = C - paper["E_X0"]
        view.update(capacity_tokens=C, eps=float(eps), headroom_tokens=head,
                    oom_bound=float(theory.oom_bound(max(head, 0.0), paper["drift"], paper["variance"])),
                    N_star_prop3=int(theory.N_star_prop3(C, k / N, p, mu_L, eps)),
                    N_star_clt=int(theory.N_star_clt(C, k / N, p, mu_L, eps, var_L)),
                    headroom_lengths_tokens=C - la.E_Xmax)
    m = measured_cycles(measured)
    if m:
        view["measured"] = m
        view["measured_here"] = (m["N"], m["k"]) == (N, k)
    return view


def memory_figure(view: dict):
    """Left: E[X0], E[Xmax] (paper, length-aware, measured) against the capacity; right: the
    OOM bound over the headroom x, the capacity's headroom marked."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.4, 3.2))
    a, b = fig.subplots(1, 2)
    cols = [("paper", view["E_X0"], view["E_Xmax"]), ("length-aware", view["E_X0_lengths"], view["E_Xmax_lengths"])]
    m = view.get("measured")
    if m and view.get("measured_here"):
        cols.append(("measured", m["X0"], m["Xmax"]))
    x = np.arange(2)
    w = 0.8 / len(cols)
    for i, (name, x0, xm) in enumerate(cols):
        a.bar(x + (i - (len(cols) - 1) / 2) * w, [x0, xm], w, label=name)
    if "capacity_tokens" in view:
        a.axhline(view["capacity_tokens"], color="k", ls="--", lw=1, label="capacity C")
    a.set_xticks(x, ["E[X0]", "E[Xmax]"])
    a.set_ylabel("KV tokens")
    a.set_title(f"N = {view['N']}, k = {view['k']}: model vs capacity", fontsize=9)
    a.legend(fontsize=7)
    d, v = view["drift"], view["variance"]
    xmax = max(3 * view["kappa"], 1.2 * view.get("headroom_tokens", 0.0), 1.0)
    xs = np.linspace(0, xmax, 200)
    b.semilogy(xs, np.maximum(np.asarray(theory.oom_bound(xs, d, v), float), 1e-300), color="C0")
    if view.get("headroom_tokens", -1) >= 0:
        b.axvline(view["headroom_tokens"], color="k", ls="--", lw=1, label="headroom C − E[X0]")
        b.legend(fontsize=7)
    b.set_xlabel("x = tokens above X0")
    b.set_ylabel("bound on P(sup Y > x)")
    b.set_title("OOM bound exp(−2|d|x/v): lower at the headroom is safer", fontsize=9)
    fig.tight_layout()
    return fig


def memory_html(view: dict) -> str:
    """The explorer's output: the numbers, then the figure."""
    src = SOURCES[view["source"]]
    rows = [("k = round(theta·N), theta = k/N", (f"{view['k']}, {fmt(view['theta'])}  ({src}; p = {fmt(view['p'])}, "
             f"mean input = {fmt(view['mu_L'], 'tokens')})")),
            ("E[X0] paper / length-aware", f"{fmt(view['E_X0'])} / {fmt(view['E_X0_lengths'])} KV tokens"),
            ("E[Xmax] paper / length-aware", f"{fmt(view['E_Xmax'])} / {fmt(view['E_Xmax_lengths'])} KV tokens"),
            ("kappa (paper) / E[sup Y] (length-aware)",
             f"{fmt(view['kappa'])} / {fmt(view['E_supY_lengths'])} ± {fmt(1.96 * view['se_supY_lengths'])} KV tokens")]
    if "capacity_tokens" in view:
        rows += [("OOM bound at the headroom C − E[X0]", (f"{view['oom_bound']:.3g}  (C = {fmt(view['capacity_tokens'])}, "
                  f"headroom {fmt(view['headroom_tokens'])} tokens)")),
                 (f"memory-safe N* at eps = {fmt(view['eps'])}", (f"{view['N_star_prop3']} (Prop. 3), "
                  f"{view['N_star_clt']} (CLT)")),
                 ("headroom above the length-aware E[Xmax]", fmt(view["headroom_lengths_tokens"], "tokens"))]
    m = view.get("measured")
    if m:
        where = "" if view.get("measured_here") else f"  (the run used N = {m['N']}, k = {m['k']}: set them to compare)"
        rows.append(("measured X0 / Xmax (the run's cycles)", f"{fmt(m['X0'])} / {fmt(m['Xmax'])} KV tokens{where}"))
    return rows_html(rows, "pdlib-memory-summary") + figure_html(memory_figure(view), "memory model vs capacity")


DEFAULTS = {"N": 8, "theta": 0.25, "p": 0.01, "mu_L": 100.0, "var_L": 0.0, "eps": 0.01}


def settings(measured=None, **values) -> dict:
    """``memory_view``'s arguments: ``DEFAULTS`` < ``values``; the source is the run's lengths when
    they are given (else geometric); capacity None: 2 x the paper's E[Xmax] at these values."""
    out = {**DEFAULTS, **values}
    has = out.get("input_lens") is not None and out.get("output_lens") is not None
    out.setdefault("source", "run" if has else "geometric")
    if out.get("capacity_tokens") is None:
        k = int(np.clip(round(out["theta"] * out["N"]), 1, int(out["N"]) - 1))
        out["capacity_tokens"] = round(2 * float(theory.E_Xmax(out["N"], k / out["N"], out["p"], out["mu_L"])))
    out["measured"] = measured_cycles(measured)
    return out


class MemoryExplorer(Explorer):
    """Sliders N, theta, p, mean input, capacity, eps and the length source (updated on release)
    -> ``memory_view``; ``output.value`` the HTML of ``memory_html``, ``view`` its dict."""

    layout = (("N", "theta", "source"), ("p", "mu_L"), ("capacity_tokens", "eps"))
    view_fn, html_fn, settings_fn = staticmethod(memory_view), staticmethod(memory_html), staticmethod(settings)

    def __init__(self, **values):
        import ipywidgets as w
        v = settings(**values)
        self.fixed = {k: v.pop(k, None) for k in ("var_L", "input_lens", "output_lens", "measured", "seed")}
        self.fixed = {k: x for k, x in self.fixed.items() if x is not None}
        opts = [(SOURCES[s], s) for s in SOURCES if s == "geometric" or "input_lens" in self.fixed]
        C = int(v["capacity_tokens"])
        self.controls = {
            "N": w.IntSlider(value=int(v["N"]), min=2, max=max(256, 2 * int(v["N"])), description="N (slots)",
                             continuous_update=False),
            "theta": w.FloatSlider(value=float(v["theta"]), min=0.01, max=0.99, step=0.01, description="theta = k/N",
                                   continuous_update=False),
            "source": w.Dropdown(options=opts, value=v["source"], description="lengths"),
            "p": log_slider(w, v["p"], "p", lo=-8, hi=0),
            "mu_L": w.FloatSlider(value=float(v["mu_L"]), min=0.0, max=max(4 * float(v["mu_L"]), 1000.0), step=1.0,
                                  description="mean input", continuous_update=False),
            "capacity_tokens": w.IntSlider(value=C, min=0, max=max(20 * C, 1000), step=max(C // 100, 1),
                                           description="C (tokens)", continuous_update=False),
            "eps": log_slider(w, v["eps"], "eps", lo=-9, hi=-1, span=2),
        }
        self.controls["source"].observe(self._source_changed, names="value")
        self._source_changed()
        self._build()

    def _source_changed(self, change=None):
        geo = self.controls["source"].value == "geometric"
        self.controls["p"].disabled = self.controls["mu_L"].disabled = not geo


#: A ``MemoryExplorer`` when interactive (None: ``is_interactive()``), else its static rendering.
memory_explorer = MemoryExplorer.make
