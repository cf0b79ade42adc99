"""Native engine on CPU with tiny random models: greedy outputs equal HF ``generate`` token
for token while several prompts of different lengths run concurrently through the packed
prefill and batched decode; the step sequence follows ExclusiveBatching; KV tokens held
equal the sum over active requests of (input + generated); both termination modes; fixed and
dynamic k; capacity refusals."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdlib.engines.native import KVCapacityError, NativeEngine
from pdlib.policy import DynamicKStar, ExclusiveBatching, FixedK
from pdlib.theory import TimingModel
from pdlib.workload import Request, Workload

INPUTS = [5, 23, 9, 40, 17, 3, 31, 12]
OUTPUTS = [6, 3, 9, 4, 7, 5, 2, 8]
SMALL = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
             initializer_range=0.2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and a busy shared host spins."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def workload(vocab, inputs=INPUTS, outputs=OUTPUTS, seed=1):
    rng = np.random.default_rng(seed)
    reqs = [Request(id=f"r{i}", input_len=a, output_len=b, prompt_ids=rng.integers(1, vocab - 1, a).tolist())
            for i, (a, b) in enumerate(zip(inputs, outputs))]
    return Workload("test", reqs)


def hf_greedy(model, prompt, n):
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                       eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), generation_config=gc)
    return out[0, len(prompt):].tolist()


def replay_policy(res, policy):
    """The log must be exactly what a fresh ExclusiveBatching decides, fed the same completions."""
    sched = ExclusiveBatching(policy)
    by_id = {r["id"]: r for r in res.requests}
    n = len(res.requests)
    active = waiting = 0
    waiting = n
    for rec in res.log.records():
        assert rec["k"] == sched.k
        action, m = sched.next_action(active, waiting)
        assert (rec["phase"], rec["batch_size"]) == (action, m), rec
        if action == "prefill":
            assert len(rec["admitted"]) == m
            waiting -= m
            active += m
        active -= len(rec["finished"])
        sched.on_finished([by_id[i]["output_len"] for i in rec["finished"]])
    assert sched.next_action(active, waiting) == ("done", 0)


def check_kv_invariant(res):
    """kv_tokens after each step == sum over active requests of (input + generated)."""
    recs = list(res.log.records())
    by_id = {r["id"]: r for r in res.requests}
    is_decode = np.array([r["phase"] == "decode" for r in recs])
    for s, rec in enumerate(recs):
        held = 0
        for r in by_id.values():
            if r["admit_step"] <= s and (r["finish_step"] is None or r["finish_step"] > s):
                generated = 1 + int(is_decode[r["admit_step"] + 1:s + 1].sum())
                held += r["input_len"] + generated
        assert rec["kv_tokens"] == held, (s, rec)
        assert rec["kv_bytes"] == held * res.meta["kv_bytes_per_token"]
    assert recs[-1]["kv_tokens"] == 0


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3_dir):
    eng = NativeEngine(str(tiny_qwen3_dir), weights="pretrained", dtype="fp32", device="cpu",
                       kv_capacity_tokens=2048)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen3_dir, dtype=torch.float32,
                                                            attn_implementation="sdpa").eval()
    return eng, ref


def test_qwen3_matches_hf_generate_and_follows_policy(qwen3):
    eng, ref = qwen3
    wl = workload(eng.hf_config.vocab_size)
    policy = FixedK(N=4, k=2)
    res = eng.run(wl, policy, termination="dataset")
    for req, r in zip(wl.requests, res.requests):
        assert r["output_len"] == req.output_len
        assert r["output_ids"] == hf_greedy(ref, req.prompt_ids, req.output_len), req.id
    replay_policy(res, FixedK(N=4, k=2))
    check_kv_invariant(res)
    phases = list(res.log["phase"])
    assert phases[0] == "prefill" and "decode" in phases and phases.count("prefill") >= 3   # refills happen
    assert res.log["batch_size"][0] == 4 and res.log["tokens"][0] == sum(INPUTS[:4])
    assert np.all(res.log["duration_s"] > 0)
    assert res.meta["termination"] == "dataset" and res.meta["memory"]["kv_tokens_held"] == 0


@pytest.mark.parametrize("model_type", ["qwen2", "llama", "qwen3"])
def test_random_qwen2_llama_match_hf(model_type):
    cfg = transformers.AutoConfig.for_model(model_type, **SMALL)
    eng = NativeEngine(cfg, weights="random", dtype="fp32", device="cpu", kv_capacity_tokens=1024, seed=3)
    ref = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()
    ref.load_state_dict(eng.model.state_dict())
    wl = workload(SMALL["vocab_size"], INPUTS[:5], OUTPUTS[:5], seed=2)
    res = eng.run(wl, FixedK(N=3, k=1))
    outs = [r["output_ids"] for r in res.requests]
    assert len(set(map(tuple, outs))) > 1                  # not a degenerate constant model
    for req, out in zip(wl.requests, outs):
        assert out == hf_greedy(ref, req.prompt_ids, req.output_len), (model_type, req.id)
    replay_policy(res, FixedK(N=3, k=1))
    check_kv_invariant(res)


@pytest.fixture(scope="module")
def varied_qwen3():
    """A random Qwen3 with a wide init, so greedy outputs vary (the 0.02-init fixture repeats tokens)."""
    return NativeEngine(dict(model_type="qwen3", **SMALL), weights="random", dtype="fp32", device="cpu",
                        kv_capacity_tokens=2048, seed=7)


def test_model_termination_eos_and_truncation(varied_qwen3):
    eng = varied_qwen3
    wl = workload(eng.hf_config.vocab_size)
    base = eng.run(workload(eng.hf_config.vocab_size, outputs=[6] * len(INPUTS)), FixedK(N=8, k=3))
    eos = base.requests[2]["output_ids"][3]                # a token request r2 emits at its 4th step
    saved = eng.eos_ids
    try:
        eng.eos_ids = {eos}
        res = eng.run(wl, FixedK(N=8, k=3), termination="model", max_tokens=6)
    finally:
        eng.eos_ids = saved
    for b, r in zip(base.requests, res.requests):
        ref = b["output_ids"][:6]
        stop = ref.index(eos) + 1 if eos in ref else 6
        assert r["output_ids"] == ref[:stop]               # same tokens, cut at EOS (inclusive) or max_tokens
        assert r["truncated"] == (eos not in ref)
    assert res.requests[2]["output_len"] <= 4 and not res.requests[2]["truncated"]
    assert res.meta["num_truncated"] == sum(r["truncated"] for r in res.requests) > 0
    replay_policy(res, FixedK(N=8, k=3))
    check_kv_invariant(res)


def test_dynamic_k(varied_qwen3):
    eng = varied_qwen3
    rng = np.random.default_rng(5)
    n = 24
    wl = Workload.from_lengths("geo", rng.integers(3, 20, n), rng.geometric(0.25, n))
    timing = TimingModel(alpha_p=0.01, beta_p=1e-5, alpha_d=0.004, beta_d=1e-4)
    mk = lambda: DynamicKStar(N=6, timing=timing, p0=0.5, ema_alpha=0.3, update_interval=4)
    pol = mk()
    res = eng.run(wl, pol)
    assert len(set(res.log["k"])) > 1                      # k* moved as p was learned online
    assert pol.completions == n
    replay_policy(res, mk())
    check_kv_invariant(res)
    assert [r["output_len"] for r in res.requests] == [max(int(x), 1) for x in wl.output_lens]


def test_capacity_refusals(tiny_qwen3_dir):
    eng = NativeEngine(str(tiny_qwen3_dir), dtype="fp32", device="cpu", kv_capacity_tokens=128)
    assert eng.cache.capacity_tokens == 128 and eng.cache.page_size == 16
    with pytest.raises(KVCapacityError, match=r"request '0' needs 150 KV tokens .*at most 128"):
        eng.run(Workload.from_lengths("big", [100], [50]), FixedK(1, 1))
    with pytest.raises(KVCapacityError, match=r"step 0: admitting 4 requests needs 12 KV pages .*8 pages are free"):
        eng.run(Workload.from_lengths("adm", [40] * 4, [5] * 4), FixedK(4, 1))
    with pytest.raises(KVCapacityError, match=r"step \d+ \(decode, batch 2\).*of 128 tokens held by 2 requests"):
        eng.run(Workload.from_lengths("grow", [47, 47], [30, 30]), FixedK(2, 1))
    res = eng.run(Workload.from_lengths("ok", [40] * 4, [5] * 4), FixedK(2, 2))   # fits two at a time
    assert max(res.log["kv_tokens"]) <= 128 and eng.cache.tokens_held == 0
    with pytest.raises(KVCapacityError, match="less than one page"):
        NativeEngine(str(tiny_qwen3_dir), dtype="fp32", device="cpu", kv_memory_bytes=1000)
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            NativeEngine(str(tiny_qwen3_dir), dtype="fp32", device="cuda")
        else:
            raise ValueError("CUDA is not available (skip on GPU machines)")
