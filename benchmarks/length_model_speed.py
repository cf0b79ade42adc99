"""Wall time of ``theory.memory_model_lengths`` on 10^5 paired (input, output) samples at N in
{64, 256, 1024} and theta in {0.1, 0.5, 0.8} (issue 14: <= 1 s). Lognormal outputs capped at 4000
tokens, inputs negatively correlated with them (Gaussian copula, rho = -0.6), seed 0; min-max of
3 calls per point, after one warm-up call. Results: docs/theory_lengths.md ("Speed").

    .venv/bin/python benchmarks/length_model_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdlib import theory


def main() -> int:
    rng = np.random.default_rng(0)
    n = 100_000
    z = rng.multivariate_normal([0, 0], [[1, -0.6], [-0.6, 1]], n)
    out = np.minimum(np.maximum(np.round(np.exp(5.0 + 1.0 * z[:, 0])), 1), 4000).astype(int)
    inp = np.maximum(np.round(np.exp(5.5 + 0.8 * z[:, 1])), 1).astype(int)
    theory.memory_model_lengths(64, 6, inp[:1000], out[:1000])   # warm-up
    for N in (64, 256, 1024):
        for th in (0.1, 0.5, 0.8):
            k = max(1, round(th * N))
            ts = []
            for _ in range(3):
                t0 = time.perf_counter(); m = theory.memory_model_lengths(N, k, inp, out); ts.append(time.perf_counter() - t0)
            print(f"N={N} theta={th} k={k}: {min(ts):.2f}-{max(ts):.2f} s  E_X0={m.E_X0:.0f} E_supY={m.E_supY:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
