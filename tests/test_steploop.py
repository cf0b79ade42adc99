"""``pdlib.steploop``: the one queue/active/finish loop, checked by hand with a recording
backend, and shared for real: the native engine and the literal simulator give the same steps."""
from __future__ import annotations

import numpy as np
import pytest

from pdlib import sim, theory
from pdlib.policy import DynamicKStar, ExclusiveBatching, FixedK
from pdlib.steploop import run_steps
from pdlib.workload import Request, Workload

I, L = [3, 5, 7, 2, 4], [1, 3, 2, 4, 2]


class Recorder:
    """Logs every call; ``eos`` maps (request, generated) -> True to flag EOS there."""

    def __init__(self, eos=None):
        self.calls, self.eos, self.gen = [], eos, {}

    def _step(self, kind, rows, step):
        self.calls.append((kind, list(rows), step))
        for i in rows:
            self.gen[i] = self.gen.get(i, 0) + 1
        if self.eos is None:
            return None
        return [self.eos.get((i, self.gen[i]), False) for i in rows]

    def prefill(self, rows, step):
        return self._step("prefill", rows, step)

    def decode(self, rows, step):
        return self._step("decode", rows, step)

    def release(self, finished, active, phase, step):
        self.calls.append(("release", list(finished), list(active)))

    def durations(self):
        return [float(i) for i in range(sum(c[0] != "release" for c in self.calls))]


def test_hand_checked_bookkeeping():
    # N=2, k=1, requests (input, output) 0:(3,1) 1:(5,3) 2:(7,2) 3:(2,4) 4:(4,2) -- test_sim's hand case
    b = Recorder()
    res = run_steps(ExclusiveBatching(FixedK(2, 1)), b, ids=list("abcde"), input_lens=I, targets=L,
                    kv_bytes_per_token=10)
    assert b.calls == [
        ("prefill", [0, 1], 0), ("release", [0], [1]),       # 0 finishes in its prefill (L=1)
        ("prefill", [2], 1), ("release", [], [1, 2]),
        ("decode", [1, 2], 2), ("release", [2], [1]),
        ("prefill", [3], 3), ("release", [], [1, 3]),
        ("decode", [1, 3], 4), ("release", [1], [3]),
        ("prefill", [4], 5), ("release", [], [3, 4]),
        ("decode", [3, 4], 6), ("release", [4], [3]),
        ("decode", [3], 7), ("release", [3], []),
    ]
    c = res.log.columns
    assert list(c["phase"]) == ["prefill", "prefill", "decode", "prefill", "decode", "prefill", "decode", "decode"]
    assert c["batch_size"].tolist() == [2, 1, 2, 1, 2, 1, 2, 1]
    assert c["tokens"].tolist() == [8, 7, 2, 2, 2, 4, 2, 1]
    assert c["kv_tokens"].tolist() == [6, 14, 7, 10, 4, 9, 5, 0]
    assert c["kv_bytes"].tolist() == [60, 140, 70, 100, 40, 90, 50, 0]
    assert c["finished"] == [["a"], [], ["c"], [], ["b"], [], ["e"], ["d"]]
    assert c["admitted"] == [["a", "b"], ["c"], [], ["d"], [], ["e"], [], []]
    assert c["duration_s"].tolist() == [float(i) for i in range(8)]
    assert c["k"].tolist() == [1] * 8
    assert [r.generated for r in res.requests] == L and res.num_steps == 8
    assert [r.admit_step for r in res.requests] == [0, 0, 1, 3, 5]
    assert [r.finish_step for r in res.requests] == [0, 4, 2, 7, 6]
    assert not any(r.truncated for r in res.requests)


def test_eos_flags_truncation_and_step_limit():
    # EOS for request 1 at its 2nd token; request 2 runs into its target while EOS is checked
    b = Recorder(eos={(1, 2): True})
    res = run_steps(ExclusiveBatching(FixedK(3, 3)), b, ids=[0, 1, 2], input_lens=[1, 1, 1], targets=[5, 5, 2])
    assert [(r.generated, r.finish_step, r.truncated) for r in res.requests] == [(5, 4, True), (2, 1, False),
                                                                                (2, 1, True)]
    assert res.num_steps == 5 and np.isnan(res.log["kv_bytes"]).all()     # no bytes per token given
    cut = run_steps(ExclusiveBatching(FixedK(2, 1)), Recorder(), ids=list("abcde"), input_lens=I, targets=L,
                    max_steps=3)
    assert cut.num_steps == 3 and cut.requests[3].finish_step is None and cut.requests[3].admit_step is None


def test_dynamic_policy_sees_generated_lengths():
    tm = theory.TimingModel(alpha_p=0.02, beta_p=2e-5, alpha_d=0.008, beta_d=1e-4)
    pol = DynamicKStar(4, tm, 0.5, update_interval=1)
    run_steps(ExclusiveBatching(pol), Recorder(), ids=list(range(6)), input_lens=[2] * 6,
              targets=[3, 9, 4, 2, 7, 5])
    assert pol.completions == 6
    ref = DynamicKStar(4, tm, 0.5, update_interval=1)
    log = sim.simulate_stepwise(4, ref, Workload.from_lengths("w", [2] * 6, [3, 9, 4, 2, 7, 5]))
    assert pol.history == ref.history and len(log) > 0


def test_native_engine_and_stepwise_simulator_take_the_same_steps():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pdlib.engines.native import NativeEngine
    from pdlib.models import TINY_QWEN3
    cfg = {"model_type": "qwen3", **TINY_QWEN3}
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eng = NativeEngine(cfg, weights="random", dtype="fp32", device="cpu", kv_capacity_tokens=1024)
        rng = np.random.default_rng(3)
        reqs = [Request(f"q{i}", int(a), int(b)) for i, (a, b) in
                enumerate(zip(rng.integers(1, 40, 14), rng.integers(1, 12, 14)))]
        wl = Workload("same", reqs)
        real = eng.run(wl, FixedK(5, 2)).log.columns
    finally:
        torch.set_num_threads(n)
    ref = sim.simulate_stepwise(5, FixedK(5, 2), wl, kv_bytes_per_token=eng.cache.bytes_per_token).columns
    for name in ("phase", "batch_size", "tokens", "kv_tokens", "kv_bytes", "k", "finished", "admitted"):
        assert list(real[name]) == list(ref[name]), name
    fast = sim.simulate(5, 2, workload=wl).log.columns
    assert fast["kv_tokens"].tolist() == real["kv_tokens"].tolist()
