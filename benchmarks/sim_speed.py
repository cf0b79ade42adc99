"""Simulator speed: request-steps per second (sum of decode batch sizes / wall time).

Target (issue 3): >= 1,000,000 request-steps/s for N=64, p=0.0067 on a 2-core box.
Baseline in the same process: ``sim.simulate_stepwise`` (the literal one-Python-
iteration-per-step loop that executes the same policy), on the same lengths.

    python benchmarks/sim_speed.py [--N 64 --k 12 --p 0.0067 --mean-input 300 --steps 200000 --repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from pdlib import sim
from pdlib.workload import Workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--p", type=float, default=0.0067)
    ap.add_argument("--mean-input", type=int, default=300)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-steps", type=int, default=20_000, help="steps for the literal-loop baseline")
    args = ap.parse_args(argv)

    print(f"command : {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"date    : {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(
        f"host    : {socket.gethostname()} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})"
    )
    print(f"python  : {platform.python_version()}, numpy {np.__version__}")
    print(f"case    : N={args.N} k={args.k} p={args.p} input={args.mean_input} steps={args.steps}")

    rows = {}
    for record in (True, False):
        rates, srates = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            res = sim.simulate(
                args.N,
                args.k,
                args.p,
                input_lens=args.mean_input,
                steps=args.steps,
                seed=r,
                record_steps=record,
            )
            wall = time.perf_counter() - t0
            rates.append(res.request_steps / wall)
            srates.append(args.steps / wall)
        rows[record] = (statistics.median(rates), statistics.median(srates))
        label = "simulate (StepLog + ids)" if record else "simulate (columns only)"
        print(
            f"{label:<28} request-steps/s {rows[record][0]:>14,.0f}   steps/s {rows[record][1]:>12,.0f}"
            f"   (median of {args.repeats})"
        )

    # baseline: the literal step loop on the same request lengths
    res = sim.simulate(args.N, args.k, args.p, input_lens=args.mean_input, steps=args.baseline_steps, seed=0)
    w = Workload.from_lengths("bench", res.requests["input_len"], res.requests["ref_output_len"])
    t0 = time.perf_counter()
    log = sim.simulate_stepwise(args.N, args.k, w, steps=args.baseline_steps)
    wall = time.perf_counter() - t0
    c = log.columns
    base = float(c["batch_size"][c["phase"] == "decode"].sum()) / wall
    print(
        f"{'baseline: literal step loop':<28} request-steps/s {base:>14,.0f}   steps/s "
        f"{args.baseline_steps / wall:>12,.0f}   ({args.baseline_steps} steps)"
    )
    print(
        f"speed-up vs literal loop    : {rows[True][0] / base:.1f}x (with StepLog), "
        f"{rows[False][0] / base:.1f}x (columns only)"
    )
    target = 1_000_000
    print(
        f"target >= {target:,} request-steps/s: {'MET' if rows[True][0] >= target else 'MISSED'} "
        f"({rows[True][0] / target:.1f}x the target with the full StepLog)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
