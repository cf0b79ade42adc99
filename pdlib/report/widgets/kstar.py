"""Notebook 02's k* explorer: N, p and the timing model (alpha_p, beta_p, alpha_d, beta_d) ->
the paper's k* (``theory.k_star``, Theorem 1) and its throughput curve over k
(``theory.throughput``), the length-aware k* (``theory.k_star_lengths``) when the run's paired
lengths are given, and the run's measured fixed-k points (its sweep or results JSON) overlaid.
``kstar_view`` is the plain callback; ``KStarExplorer`` the widgets around it."""
from __future__ import annotations

import numpy as np

from pdlib import theory

from ._base import Explorer, figure_html, fmt, log_slider, result_section, rows_html

#: Above this N the length-aware k* (one fixed point per k, ~1 s at N=64 on a CPU) is skipped.
LENGTH_AWARE_MAX_N = 128


def measured_points(source) -> dict | None:
    """The run's fixed-k sweep from a ``SweepResult``, its ``kstar`` JSON section or the results
    file: N, k, whole-run requests/s, the steady-state requests/s with its 95 % interval, k_hat."""
    if isinstance(source, dict) and "requests_per_s" in source and "k" in source:
        return source                                   # already these points
    sec = result_section(source, "kstar")
    if not sec or not sec.get("sweep"):
        return None
    rows = sorted(sec["sweep"], key=lambda r: r["k"])
    ci = [r.get("steady_requests_per_s_ci") or [None, None] for r in rows]
    return {"N": int(sec["N"]), "k": [int(r["k"]) for r in rows],
            "requests_per_s": [float(r["requests_per_s"]) for r in rows],
            "steady_rps": [r.get("steady_requests_per_s") for r in rows],
            "steady_lo": [c[0] for c in ci], "steady_hi": [c[1] for c in ci],
            "k_hat": sec.get("k_hat"), "k_star": sec.get("k_star")}


def kstar_view(N, p, alpha_p, beta_p, alpha_d, beta_d, *, mu_L=0.0, input_lens=None, output_lens=None,
               measured=None) -> dict:
    """Everything the explorer shows for one setting (seconds, requests/s, tokens).

    Paper (Theorem 1): k* = the smallest k in 1..N-1 with k*tau(N-k) - sum_{j=N-k+1..N} tau(j) >= alpha_p,
    throughput(k) = k / (alpha_p + beta_p*k*mu_L + sum_{j=N-k+1..N} tau(j)) over k = 1..N-1.
    Length-aware (``theory.k_star_lengths``): the argmax of the renewal-reward throughput for the
    paired (input, output) lengths; it reads p from the lengths (1/mean output), not from ``p``."""
    N = int(N)
    if N < 2:
        raise ValueError(f"N must be an integer >= 2 (k* is searched in 1..N-1), got {N}")
    ks = theory.k_star(N, p, alpha_p, alpha_d, beta_d, beta_p, mu_L)
    k = np.arange(1, N)
    curve = np.atleast_1d(theory.throughput(k, N, p, alpha_p, beta_p, alpha_d, beta_d, mu_L))
    view = {"N": N, "p": float(p), "alpha_p": float(alpha_p), "beta_p": float(beta_p), "alpha_d": float(alpha_d),
            "beta_d": float(beta_d), "mu_L": float(mu_L), "k_star": ks.k, "theta": ks.theta,
            "fallback_used": ks.fallback_used, "throughput_rps": ks.throughput,
            "curve_k": k.tolist(), "curve_rps": [float(x) for x in curve]}
    if input_lens is not None and output_lens is not None:
        outs = np.maximum(np.asarray(output_lens, float), 1)
        if N > LENGTH_AWARE_MAX_N:
            view["lengths_note"] = f"length-aware k* not computed for N > {LENGTH_AWARE_MAX_N} (about N fixed points)"
        else:
            kl = theory.k_star_lengths(N, alpha_p, beta_p, alpha_d, beta_d, np.asarray(input_lens, float), outs)
            view.update(k_star_lengths=kl.k, throughput_lengths_rps=kl.throughput,
                        throughput_lengths_at_paper_k_rps=kl.throughput_at_paper_k,
                        curve_lengths_rps=list(kl.curve), p_lengths=float(1.0 / outs.mean()))
    m = measured_points(measured)
    if m:
        view["measured"] = m
        view["measured_at_N"] = m["N"] == N
    return view


def kstar_figure(view: dict):
    """Theory throughput over k (paper; length-aware dashed), k* marked, measured points overlaid."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.subplots()
    ax.plot(view["curve_k"], view["curve_rps"], "-", color="C0", label=f"paper theory (p = {fmt(view['p'])})")
    ax.axvline(view["k_star"], color="C0", ls=":", lw=1, label=f"k* (paper) = {view['k_star']}")
    if "curve_lengths_rps" in view:
        ax.plot(view["curve_k"], view["curve_lengths_rps"], "--", color="C2", label="length-aware theory")
        ax.axvline(view["k_star_lengths"], color="C2", ls=":", lw=1,
                   label=f"k* (length-aware) = {view['k_star_lengths']}")
    m = view.get("measured")
    if m and view.get("measured_at_N"):
        ax.plot(m["k"], m["requests_per_s"], "o", color="C3", label="measured (whole run)")
        ok = [i for i, lo in enumerate(m["steady_lo"]) if lo is not None and m["steady_rps"][i] is not None]
        if ok:
            y = np.array([m["steady_rps"][i] for i in ok], float)
            err = np.array([[y[j] - m["steady_lo"][i], m["steady_hi"][i] - y[j]] for j, i in enumerate(ok)]).T
            ax.errorbar([m["k"][i] for i in ok], y, yerr=np.maximum(err, 0), fmt="s", ms=3, color="C1",
                        capsize=3, label="measured steady state, 95 % CI")
    ax.set_xlabel("refill size k (requests)")
    ax.set_ylabel("throughput (requests/s)")
    ax.set_title(f"N = {view['N']}: throughput vs k — look where the curve peaks vs k*", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def kstar_html(view: dict) -> str:
    """The explorer's output: the numbers, then the figure."""
    fb = " — fallback N//5: no k in 1..N-1 meets the condition" if view["fallback_used"] else ""
    rows = [("k* (paper, Theorem 1)", f"{view['k_star']}  (theta = k*/N = {fmt(view['theta'])}){fb}"),
            ("throughput at k* (paper model)", fmt(view["throughput_rps"], "requests/s"))]
    if "k_star_lengths" in view:
        rows += [("k* (length-aware, the run's lengths)", (f"{view['k_star_lengths']}  (p from the lengths = "
                  f"{fmt(view['p_lengths'])}; the p slider does not apply)")),
                 ("throughput at it (length-aware model)", fmt(view["throughput_lengths_rps"], "requests/s"))]
    elif "lengths_note" in view:
        rows.append(("k* (length-aware)", view["lengths_note"]))
    m = view.get("measured")
    if m:
        where = "" if view.get("measured_at_N") else f"  (the run used N = {m['N']}: set N = {m['N']} to overlay)"
        rows.append(("measured k̂ (best fixed k of the run)", f"{m['k_hat']}{where}"))
    return (rows_html(rows, "pdlib-kstar-summary") +
            figure_html(kstar_figure(view), f"throughput vs k at N={view['N']}"))


DEFAULTS = {"N": 8, "p": 0.01, "alpha_p": 1e-2, "beta_p": 1e-5, "alpha_d": 1e-2, "beta_d": 1e-4}


def settings(timing=None, measured=None, **values) -> dict:
    """``kstar_view``'s arguments: ``DEFAULTS`` < ``values`` < the timing model's alpha/beta
    (a ``theory.TimingModel`` or its dict), the measured points read once."""
    out = {**DEFAULTS, **values}
    if timing is not None:
        t = timing if isinstance(timing, dict) else timing.as_kwargs()
        out.update({k: float(t[k]) for k in ("alpha_p", "beta_p", "alpha_d", "beta_d")})
    out["measured"] = measured_points(measured)
    return out


class KStarExplorer(Explorer):
    """Sliders N, p, alpha_p, beta_p, alpha_d, beta_d (updated on release) -> ``kstar_view``;
    ``output.value`` the HTML of ``kstar_html``, ``view`` its dict."""

    layout = (("N", "p"), ("alpha_p", "beta_p"), ("alpha_d", "beta_d"))
    view_fn, html_fn, settings_fn = staticmethod(kstar_view), staticmethod(kstar_html), staticmethod(settings)

    def __init__(self, **values):
        import ipywidgets as w
        v = settings(**values)
        self.fixed = {k: v.pop(k, None) for k in ("mu_L", "input_lens", "output_lens", "measured")}
        self.fixed["mu_L"] = float(self.fixed["mu_L"] or 0.0)
        self.controls = {
            "N": w.IntSlider(value=int(v["N"]), min=2, max=max(256, 2 * int(v["N"])), description="N (slots)",
                             continuous_update=False),
            "p": log_slider(w, v["p"], "p", lo=-8, hi=0),
            "alpha_p": log_slider(w, v["alpha_p"], "alpha_p (s)"),
            "beta_p": log_slider(w, v["beta_p"], "beta_p (s/tok)"),
            "alpha_d": log_slider(w, v["alpha_d"], "alpha_d (s)"),
            "beta_d": log_slider(w, v["beta_d"], "beta_d (s/req)"),
        }
        self._build()


#: A ``KStarExplorer`` when interactive (None: ``is_interactive()``), else its static rendering.
kstar_explorer = KStarExplorer.make
