"""Hand-checked values of pdlib.theory (plain arithmetic in the test, no theory helpers)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlib import theory as T

# --------------------------------------------------------------------------- tau / k* / throughput


def _tau(j, p, ad, bd):
    return (ad + bd * j) / (1 - (1 - p) ** j)


def _throughput(k, N, p, ap, bp, ad, bd, mu):
    return k / (ap + bp * k * mu + sum(_tau(j, p, ad, bd) for j in range(N - k + 1, N + 1)))


def test_tau_by_hand():
    assert T.tau(1, 0.5, 0.01, 0.001) == pytest.approx(0.011 / 0.5)
    assert T.tau(3, 0.5, 0.01, 0.001) == pytest.approx(0.013 / (1 - 0.125))
    assert T.tau(4, 1.0, 0.01, 0.001) == pytest.approx(0.014)          # p = 1: every request ends
    np.testing.assert_allclose(T.tau(np.array([1, 3]), 0.5, 0.01, 0.001), [0.022, 0.013 / 0.875])


def test_k_star_small_N_enumerated_by_hand():
    N, p, ap, bp, ad, bd, mu = 8, 0.2, 0.05, 1e-4, 0.01, 0.001, 50.0
    thr = [_throughput(k, N, p, ap, bp, ad, bd, mu) for k in range(1, N + 1)]
    best_k = 1 + max(range(N), key=lambda i: thr[i])
    r = T.k_star(N, p, ap, ad, bd, beta_p=bp, mu_L=mu)
    assert not r.fallback_used
    assert r.k == best_k
    assert r.throughput == pytest.approx(thr[best_k - 1])
    assert r.theta == r.k / N
    # the condition by hand: fails at k*-1, holds at k*
    lhs = lambda k: k * _tau(N - k, p, ad, bd) - sum(_tau(j, p, ad, bd) for j in range(N - k + 1, N + 1))
    assert lhs(r.k) >= ap
    if r.k > 1:
        assert lhs(r.k - 1) < ap
    np.testing.assert_allclose(r.lhs, [lhs(k) for k in range(1, N)])
    # the vectorized throughput agrees with the hand sum for every k
    np.testing.assert_allclose(T.throughput(np.arange(1, N + 1), N, p, ap, bp, ad, bd, mu), thr)


@pytest.mark.parametrize("regime,ap,ad,bd", [
    ("fixed-cost dominated", 0.5, 0.02, 1e-5),
    ("balanced", 0.05, 0.01, 1e-4),
    ("per-request dominated", 0.005, 0.001, 5e-4),
])
def test_k_star_is_the_argmax_of_the_cycle_model(regime, ap, ad, bd):
    for N, p in [(16, 0.05), (64, 0.005), (128, 0.02)]:
        r = T.k_star(N, p, ap, ad, bd, beta_p=2e-5, mu_L=300)
        f = np.asarray(T.throughput(np.arange(1, N + 1), N, p, ap, 2e-5, ad, bd, 300))
        if r.fallback_used:
            assert r.k == max(1, N // 5) and int(np.argmax(f)) + 1 == N
        else:
            assert r.throughput == pytest.approx(f.max(), rel=1e-12), (regime, N, p)


def test_k_star_fallback_is_reported():
    # alpha_p far above anything the decode side can reach: no k <= N-1 qualifies
    r = T.k_star(10, 0.5, 1e6, 0.01, 0.0)
    assert r.fallback_used and r.k == 2
    r = T.k_star(3, 0.5, 1e6, 0.01, 0.0)
    assert r.fallback_used and r.k == 1                 # N//5 = 0 -> at least 1


def test_theta_star_solves_its_equation():
    p = np.array([1e-4, 0.005, 0.05, 0.3])
    for ap, ad in [(0.05, 0.01), (1.0, 0.002), (1e-4, 0.1)]:
        th = T.theta_star(p, ap, ad)
        np.testing.assert_allclose(th / (1 - th) + np.log(1 - th), p * ap / ad, rtol=1e-9, atol=1e-13)
        the = T.theta_star(p, ap, ad, exact=True)
        np.testing.assert_allclose(the / (1 - the) + np.log(1 - the), -np.log(1 - p) * ap / ad,
                                   rtol=1e-9, atol=1e-13)
        assert np.all(the >= th)                        # -ln(1-p) > p
    assert T.theta_star(0.005, 0.0, 0.01) == pytest.approx(0.0, abs=1e-9)


def test_theta_star_is_the_small_pN_limit_of_k_star():
    for N, p, ap in [(1000, 1e-4, 0.05), (2000, 5e-5, 0.5), (500, 2e-4, 0.05)]:
        r = T.k_star(N, p, ap, 0.01, 0.0)
        assert abs(r.k / N - T.theta_star(p, ap, 0.01)) <= 2.0 / N


# --------------------------------------------------------------------------- p estimation


def test_p_offline_and_ema():
    assert T.p_offline([100, 200, 300]) == pytest.approx(1 / 200)
    assert T.p_ema(0.01, 50, 0.1) == pytest.approx(0.1 / 50 + 0.9 * 0.01)
    with pytest.raises(ValueError, match="output_lens"):
        T.p_offline([10, 0])


# --------------------------------------------------------------------------- memory


def test_D_and_the_seed000_misprint_by_hand():
    ln2 = math.log(2)
    assert T.D(0.5, 0.01, 100) == pytest.approx(100 + 0.5 / (0.5 * 0.01) * ln2)     # 169.31
    assert T.D_seed000_misprint(0.5, 0.01, 100) == pytest.approx(100 + 0.25 / (0.5 * 0.01) * ln2)
    assert T.E_X0(64, 0.5, 0.01, 100) == pytest.approx(64 * (100 + 100 * ln2))
    th = 12 / 64
    assert T.E_X0(64, th, 0.0067, 300) == pytest.approx(
        64 * (300 + (1 - th) / (th * 0.0067) * math.log(1 / (1 - th))))


def test_kappa_drift_variance_oom_by_hand():
    assert T.kappa(0.01, 100) == pytest.approx(100.0)
    assert T.E_Xmax(64, 0.5, 0.01, 100) == pytest.approx(64 * (100 + 100 * math.log(2)) + 100)
    assert T.drift(64, 0.01, 100) == pytest.approx(-64.0)
    # mu_L = 0, Var_L = 0: v = 2N(1-p)/p exactly
    assert T.variance(10, 0.5, 0.0) == pytest.approx(20.0)
    N, p, mu, vL = 64, 0.0067, 300, 900
    ES, VS = mu + 1 / p, vL + (1 - p) / p ** 2
    assert T.variance(N, p, mu, vL) == pytest.approx(N * p * VS + N * p * (1 - p) * ES ** 2)
    assert T.variance_approx(N, p) == pytest.approx(2 * N / p)
    assert T.oom_bound(50, -64, 20000) == pytest.approx(math.exp(-2 * 64 * 50 / 20000))
    assert T.oom_bound(0, -64, 20000) == 1.0


def test_N_star_boundaries():
    rng = np.random.default_rng(0)
    for _ in range(300):
        th, p, mu = rng.uniform(0.05, 0.95), 10 ** rng.uniform(-3.5, -1), rng.uniform(1, 2000)
        C, eps, vL = 10 ** rng.uniform(3, 7), 10 ** rng.uniform(-4, -0.5), rng.uniform(0, 1e5)
        Dv = mu + (1 - th) / (th * p) * math.log(1 / (1 - th))
        head = 1 / (p * p * mu) * math.log(1 / eps)
        n = T.N_star_prop3(C, th, p, mu, eps)
        if C - head < Dv:
            assert n == 0
        else:
            assert n * Dv <= (C - head) * (1 + 1e-12) and (n + 1) * Dv > C - head
        sig = math.sqrt(vL + (1 - p) / p ** 2)
        m = T.N_star_clt(C, th, p, mu, eps, vL)
        load = [x * Dv + sig * math.sqrt(x * math.log(1 / eps)) for x in (m, m + 1)]
        assert (m == 0 or load[0] <= C) and load[1] > C
    # the seed-tolerance example: C = 110,429 tokens (RTX 4080 16 GB, Qwen3-1.7B)
    assert T.N_star_prop3(110429, 12 / 64, 0.0067, 300, 0.01) == 253
    assert T.N_star_clt(110429, 12 / 64, 0.0067, 300, 0.01) == 242


# --------------------------------------------------------------------------- timing fits, seed 004


def test_fit_linear_and_timing_recover_exact_lines():
    x = np.array([1, 2, 4, 8, 16, 32, 64.0])
    f = T.fit_linear(x, 0.004 + 1e-4 * x)
    assert (f.intercept, f.slope, f.r2) == pytest.approx((0.004, 1e-4, 1.0))
    tm = T.fit_timing([128, 256, 512], [0.02 + 1e-5 * t for t in (128, 256, 512)], x, 0.004 + 1e-4 * x)
    assert (tm.alpha_p, tm.beta_p, tm.alpha_d, tm.beta_d) == pytest.approx((0.02, 1e-5, 0.004, 1e-4))


def test_latency_model_fit_and_b_SLA_by_hand():
    b, L = np.meshgrid([1, 2, 4, 8, 16, 32], [128, 256, 512, 1024, 2048])
    Tt = 0.010 + 0.0002 * L * (1 + 0.3 * (b - 1) / b)
    fit = T.fit_T_latency(b, L, Tt)
    assert (fit.a, fit.b_, fit.g, fit.r2) == pytest.approx((0.010, 0.0002, 0.3, 1.0))
    # T(b, 3000) = 0.61 + 0.18 (b-1)/b <= 0.75  <=>  (b-1)/b <= 7/9  <=>  b <= 4.5
    assert T.b_SLA(0.75, 3000, 0.010, 0.0002, 0.3) == 4
    assert T.b_SLA(0.5, 3000, 0.010, 0.0002, 0.3) == 0
    assert T.b_SLA(1.0, 500, 0.010, 0.0002, 0.3, B_MAX=128) == 128


def test_seed004_chain_reproduces_the_seeds_numbers():
    eta = T.eta(12.0, 4.0, 1.875e-4)                       # the seed's units (GB)
    assert eta == pytest.approx(42666.67, abs=0.01)
    assert T.L0(eta) == pytest.approx(4266.67, abs=0.01)
    assert T.b_mem(eta, 500) == 76 and T.b_mem(eta, 1000) == 38
    assert T.b_target(76, 25, 128) == 25
    with pytest.raises(ValueError, match="exceeds M_max"):
        T.eta(4.0, 12.0, 1.875e-4)


# --------------------------------------------------------------------------- KV bytes from configs


def test_kv_bytes_qwen3_1_7b_from_the_real_config(qwen3_dir):
    cfg = json.loads((qwen3_dir / "config.json").read_text())
    assert T.kv_bytes_per_token(cfg) == 114_688 == 2 * 28 * 8 * 128 * 2      # bf16 from the config
    assert T.kv_bytes_per_token(cfg, "float32") == 229_376
    assert T.kv_bytes_per_token(cfg, "fp8") == 57_344
    assert T.kv_bytes_per_token_seed004() == 196_608 == 2 * 24 * 2048 * 2     # the seed's error


def test_kv_bytes_other_real_configs(data_dir):
    load = lambda n: json.loads((data_dir / "models" / n / "config.json").read_text())
    q25 = load("qwen2.5-7b-instruct")          # sliding_window set but use_sliding_window false
    assert T.kv_bytes_per_token(q25) == 2 * 28 * 4 * 128 * 2 == 57_344
    assert T.kv_bytes_per_token(load("llama-2-7b"), "float16") == 2 * 32 * 32 * 128 * 2   # MHA
    assert T.kv_bytes_per_token(load("qwen3-0.6b")) == 114_688


@pytest.mark.parametrize("patch,match", [
    ({"use_sliding_window": True, "sliding_window": 4096}, "sliding-window"),
    ({"use_sliding_window": None, "sliding_window": 4096}, "sliding-window"),
    ({"layer_types": ["full_attention", "sliding_attention"] * 14}, "mixed layer types"),
    ({"kv_lora_rank": 512}, "latent attention"),
])
def test_kv_bytes_refuses_non_uniform_caches(qwen3_dir, patch, match):
    cfg = json.loads((qwen3_dir / "config.json").read_text())
    cfg.update(patch)
    if patch.get("use_sliding_window") is None and "use_sliding_window" in patch:
        del cfg["use_sliding_window"]          # Mistral style: sliding_window alone
    with pytest.raises(ValueError, match=match):
        T.kv_bytes_per_token(cfg)


def test_kv_bytes_match_a_real_cache(tiny_qwen3_dir):
    """A real forward pass of the tiny random Qwen3: bytes held by its KV cache per token."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32).eval()
    n = 37
    with torch.no_grad():
        cache = model(torch.arange(n)[None], use_cache=True).past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held / n == T.kv_bytes_per_token(model.config, "float32") == 2 * 2 * 2 * 32 * 4


def test_memory_model_bundles_the_individual_formulas():
    from pdlib import theory as T
    m = T.memory_model(64, 12, 0.0067, 300.0, 25.0)
    th = 12 / 64
    assert m["E_X0"] == pytest.approx(64 * T.D(th, 0.0067, 300.0))
    assert m["E_Xmax"] == pytest.approx(m["E_X0"] + 1 / (0.0067 ** 2 * 300.0))
    assert m["oom_bound_at_kappa"] == pytest.approx(np.exp(-2 * abs(m["drift"]) * m["kappa"] / m["variance"]))
    with pytest.raises(ValueError, match="k must be an integer in 1..N-1"):
        T.memory_model(64, 64, 0.0067, 300.0)


def test_allocating_functions_bound_N_before_allocating():
    """k_star/throughput allocate O(N): N > N_MAX is a ValueError naming N, not a 7 TiB allocation."""
    for N in (T.N_MAX + 1, 10**12, 2**63):
        with pytest.raises(ValueError, match=r"N must be an integer >= 1 and <= 1000000"):
            T.k_star(N, 0.01, 0.05, 0.01, 1e-4)
        with pytest.raises(ValueError, match=r"N must be an integer >= 1 and <= 1000000"):
            T.throughput(1, N, 0.01, 0.05, 0.0, 0.01, 1e-4)
    with pytest.raises(ValueError, match="B_MAX"):
        T.b_SLA(1.0, 500, 0.01, 2e-4, 0.3, B_MAX=10**12)


def test_tau_is_accurate_for_tiny_p():
    """1-(1-p)^j via expm1/log1p: tau(j) -> (alpha_d + beta_d*j)/(j*p) as p -> 0, tau(0) = inf."""
    j = np.arange(1, 65)
    for p in (1e-9, 1e-12, 1e-15):
        assert np.allclose(T.tau(j, p, 0.01, 1e-4) * j * p / (0.01 + 1e-4 * j), 1, rtol=1e-6)
    assert T.tau(0, 1.0, 0.01, 0.0) == math.inf and T.tau(3, 1.0, 0.01, 0.0) == pytest.approx(0.01)


@pytest.mark.parametrize("field,value", [("num_attention_heads", 0), ("num_hidden_layers", -1),
                                         ("num_key_value_heads", 2.5), ("hidden_size", "abc"),
                                         ("head_dim", float("nan")), ("num_hidden_layers", True)])
def test_kv_bytes_refuses_bad_architecture_fields(field, value):
    cfg = {"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "hidden_size": 2048}
    cfg[field] = value
    if field == "head_dim" or field == "hidden_size":
        cfg.pop("head_dim" if field == "hidden_size" else "hidden_size", None)
    with pytest.raises(ValueError, match=f"{field} must be an integer in 1.."):
        T.kv_bytes_per_token(cfg, "fp16")
