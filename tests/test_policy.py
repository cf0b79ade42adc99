"""``pdlib.policy``: the online p estimators of ``DynamicKStar`` (issue 14, item 6) and ``make_policy``."""
from __future__ import annotations

import numpy as np
import pytest

from pdlib import theory
from pdlib.policy import DEFAULT_ESTIMATOR, ESTIMATORS, DynamicKStar, FixedK, make_policy

TM = theory.TimingModel(alpha_p=0.02, beta_p=2e-5, alpha_d=0.008, beta_d=1e-4)


def test_default_estimator_is_the_unbiased_inverse_mean():
    assert DEFAULT_ESTIMATOR == "inverse_mean" and set(ESTIMATORS) == {"inverse_mean", "paper"}
    assert DynamicKStar(32, TM, 0.01).estimator == "inverse_mean"
    assert make_policy({"policy": "dynamic", "N": 32, "p0": 0.01}, timing=TM).estimator == "inverse_mean"
    paper = make_policy({"policy": "dynamic", "N": 32, "p0": 0.01, "estimator": "paper"}, timing=TM)
    assert paper.estimator == "paper"
    assert DynamicKStar(32, TM, 0.01).describe()["estimator"] == "inverse_mean"


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_updates_follow_the_theory_functions(estimator):
    a, p0 = 0.2, 0.05
    pol = DynamicKStar(16, TM, p0, ema_alpha=a, update_interval=3, estimator=estimator)
    p, m = p0, 1 / p0
    for L in (7, 1, 40, 3, 0, 12, 9):       # 0 counts as 1 token, as the engines count it
        pol.observe_completion(L)
        L1 = max(L, 1)
        if estimator == "paper":
            p = float(theory.p_ema(p, L1, a))
        else:
            m = float(theory.p_ema_inverse_mean(m, L1, a))
            p = 1 / m
        assert pol.p == pytest.approx(p, rel=1e-12)
    assert pol.completions == 7 and len(pol.history) == 1 + 7 // 3
    assert pol.k == theory.k_star(16, pol.history[-1][1], **TM.as_kwargs()).k


def test_inverse_mean_is_unbiased_and_the_paper_rule_is_not():
    """Geometric(p) outputs: 1/EMA(L) settles near p; the paper's EMA of 1/L near E[1/L] =
    p ln(1/p)/(1-p) (6.2 p at p = 0.002)."""
    p = 0.002
    L = np.random.default_rng(0).geometric(p, 20_000)
    est = {}
    for name in ESTIMATORS:
        pol = DynamicKStar(32, TM, p, ema_alpha=0.01, update_interval=10**9, estimator=name)
        trace = []
        for x in L:
            pol.observe_completion(int(x))
            trace.append(pol.p)
        est[name] = float(np.mean(trace[5000:]))
    assert est["inverse_mean"] == pytest.approx(p, rel=0.1)
    assert est["paper"] == pytest.approx(p * np.log(1 / p) / (1 - p), rel=0.15)


def test_bad_estimator_and_specs():
    with pytest.raises(ValueError, match="estimator must be one of 'inverse_mean', 'paper'"):
        DynamicKStar(8, TM, 0.1, estimator="ema")
    with pytest.raises(ValueError, match="estimator"):
        make_policy({"policy": "dynamic", "N": 8, "p0": 0.1, "estimator": "mean"}, timing=TM)
    with pytest.raises(ValueError, match="timing"):
        make_policy({"policy": "dynamic", "N": 8, "p0": 0.1})
    assert isinstance(make_policy({"policy": "fixed", "N": 8, "k": 2}), FixedK)


@pytest.mark.vllm
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_vllm_policy_spec_keeps_the_estimator(estimator):
    """The vLLM plugin rebuilds the policy from a JSON spec in the engine process: the estimator
    must survive the trip (else an explicit ``paper`` run would silently use the default)."""
    pytest.importorskip("vllm", reason="vLLM is not installed")
    from pdlib.engines.vllm import scheduler as sched
    pol = DynamicKStar(8, TM, 0.1, estimator=estimator)
    back = sched.policy_from_spec(sched.policy_spec(pol))
    assert back.estimator == estimator and back.p == pytest.approx(pol.p) and back.k == pol.k
