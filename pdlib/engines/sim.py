"""``SimEngine``: the simulator behind the engine protocol (``get_engine("sim", ...)``).

``run`` is ``pdlib.sim.simulate`` on the workload's reference lengths in order; ``profile``
samples the timing model itself (optionally with seeded noise) and fits it back.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..records import ProfileResult, RunResult, request_rows
from ..sim import DEFAULT_TIMING, simulate
from .base import ProfileGrid

DEFAULT_GRID = ProfileGrid(prefill_tokens=(16, 64, 128, 256, 512), decode_batches=(1, 2, 4, 8, 16, 32, 64),
                           context_lens=(64, 256), repeats=3)


class SimEngine:
    """Engine protocol implementation backed by ``simulate`` (``get_engine("sim", ...)``).

    ``timing``: a ``theory.TimingModel`` (or a dict of alpha_p, beta_p, alpha_d, beta_d;
    default ``DEFAULT_TIMING``); ``kv_bytes_per_token`` fills the ``kv_bytes`` column;
    ``seed`` seeds ``profile``'s optional noise (``run`` is deterministic)."""

    name = "sim"

    def __init__(
        self,
        timing: theory.TimingModel | dict | None = None,
        kv_bytes_per_token: int | None = None,
        seed: int = 0,
        **ignored,
    ):
        if isinstance(timing, dict):
            timing = theory.TimingModel(
                **{k: float(timing[k]) for k in ("alpha_p", "beta_p", "alpha_d", "beta_d")}
            )
        self.timing = DEFAULT_TIMING if timing is None else timing
        self.kv_bytes_per_token = kv_bytes_per_token
        self.seed = int(seed)
        self.ignored_config = sorted(ignored)

    def run(
        self,
        workload,
        policy,
        *,
        termination: str = "dataset",
        max_tokens: int | None = None,
        progress: bool = False,
    ) -> RunResult:
        """Serve every request of ``workload`` (in order) under ``policy``; each stops at
        its reference output length (capped by ``max_tokens``)."""
        if termination != "dataset":
            raise ValueError(
                f"termination must be 'dataset' for the simulator (it has no model to emit EOS), "
                f"got {termination!r}"
            )
        if len(workload) == 0:
            raise ValueError(f"workload {workload.name!r} has no requests")
        res = simulate(
            int(policy.N),
            policy,
            workload=workload,
            timing=self.timing,
            max_tokens=max_tokens,
            kv_bytes_per_token=self.kv_bytes_per_token,
        )
        r = res.requests
        reqs = request_rows([q.id for q in workload.requests], r["input_len"], r["generated"],
                            [q.output_len for q in workload.requests], r["admit_step"], r["finish_step"],
                            r["truncated"])
        meta = dict(
            res.meta,
            engine="sim",
            termination=termination,
            policy=res.policy,
            workload=workload.name,
            device="simulated (timing model)",
            ignored_config=self.ignored_config,
            k_history=res.k_history,
        )
        return RunResult(res.log, reqs, meta)

    def describe(self) -> dict:
        return {"engine": "sim", "timing": self.timing.as_kwargs(), "kv_bytes_per_token": self.kv_bytes_per_token,
                "seed": self.seed}

    def profile(self, grid: ProfileGrid | None = None, *, noise: float = 0.0, **kwargs) -> ProfileResult:
        """Timing samples from the timing model itself (multiplicative Gaussian ``noise``,
        e.g. 0.02 for 2 %, seeded), fitted back with ``theory.fit_timing``. ``grid``: a
        ``ProfileGrid`` or its fields as keywords (other keywords are ignored)."""
        g, _ = ProfileGrid.resolve(grid, DEFAULT_GRID, kwargs)
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        rng = np.random.default_rng(self.seed)
        jitter = (lambda: 1.0 + noise * rng.standard_normal()) if noise else (lambda: 1.0)
        pre = [
            {"tokens": int(t), "num_requests": 1, "seconds": float(self.timing.prefill_time(t)) * jitter()}
            for t in g.prefill_tokens
            for _ in range(g.repeats)
        ]
        dec = [
            {"batch": int(b), "context_len": int(c), "seconds": float(self.timing.decode_time(b)) * jitter()}
            for b in g.decode_batches
            for c in g.context_lens
            for _ in range(g.repeats)
        ]
        return ProfileResult.from_samples(
            pre,
            dec,
            {"engine": "sim", "noise": noise, "seed": self.seed, "timing_true": self.timing.as_kwargs()},
        )

