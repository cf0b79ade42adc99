"""Exclusive batching (fixed-k sweep and online k*) vs vLLM's mixed batching, same process.

Every configuration serves the same workload on the same vLLM build; throughput is printed
with its ratio to the mixed-batching baseline run in this process. Without ``--model`` a
tiny random Qwen3 (2 layers, fp32) is built in a temp folder, which is what the CPU
numbers in docs/vllm.md use:

    python benchmarks/vllm_eb_vs_mb.py --num-requests 48 --N 8 --ks 1,2,4,6 --repeats 2 --step-timer cpu_s
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdlib.engines.vllm import VLLMEngine
from pdlib.models import save_random_qwen3
from pdlib.policy import DynamicKStar, FixedK
from pdlib.workload import Workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or HF id (default: a tiny random Qwen3)")
    ap.add_argument("--num-requests", type=int, default=48)
    ap.add_argument("--N", type=int, default=8)
    ap.add_argument("--ks", default="1,2,4,6")
    ap.add_argument("--p", type=float, default=1 / 24, help="geometric output-length parameter")
    ap.add_argument("--input-range", default="32,256")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--kv-cache-memory-bytes", type=int, default=64 << 20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-timer", default="wall_s", choices=("wall_s", "cpu_s"),
                    help="cpu_s: process CPU time per step (use on an oversubscribed CPU machine)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best run of each is shown")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    model = a.model or str(save_random_qwen3(tempfile.mkdtemp(prefix="tiny-qwen3-")))
    rng = np.random.default_rng(a.seed)
    lo, hi = (int(x) for x in a.input_range.split(","))
    wl = Workload.from_lengths("bench", rng.integers(lo, hi + 1, a.num_requests),
                               np.minimum(rng.geometric(a.p, a.num_requests), 256))
    kw = dict(dtype=a.dtype, block_size=a.block_size, kv_cache_memory_bytes=a.kv_cache_memory_bytes,
              max_num_seqs=a.N, max_num_batched_tokens=max(2048, a.N * hi),
              step_timer=a.step_timer)
    ap_repeats = max(1, a.repeats)
    rows: dict[str, dict] = {}

    def record(label, res, k):
        r = {"config": label, "k": k, "steps": len(res.log), "prefill_steps": int(res.log.is_prefill().sum()),
             "total_s": res.total_time_s, "req_per_s": res.requests_per_s, "out_tok_per_s": res.output_tokens_per_s}
        old = rows.get(label)
        r["runs_s"] = (old["runs_s"] if old else []) + [round(res.total_time_s, 3)]
        if old is None or r["total_s"] < old["total_s"]:     # best of the repeats (least disturbed)
            rows[label] = r
        else:
            old["runs_s"] = r["runs_s"]

    t0 = time.time()
    ks = [int(x) for x in a.ks.split(",")]
    mb = VLLMEngine(model, "mb", **kw)
    eb = VLLMEngine(model, "eb", **kw)
    mb.run(wl.head(a.N), FixedK(a.N, 1))                     # warm-up
    eb.run(wl.head(a.N), FixedK(a.N, 1))
    prof = eb.profile(prefill_tokens=(64, 256, 512, 1024), decode_batches=sorted({1, a.N // 2, a.N}),
                      context_lens=((lo + hi) // 2,), repeats=3)
    for _ in range(ap_repeats):                              # interleaved, so load drifts hit every config
        record("mb (vLLM mixed)", mb.run(wl, FixedK(a.N, 1)), None)
        for k in ks:
            record(f"eb fixed k={k}", eb.run(wl, FixedK(a.N, k)), k)
        pol = DynamicKStar(a.N, prof.timing, p0=1 / float(np.mean(wl.output_lens)), update_interval=8)
        k0 = pol.k
        res = eb.run(wl, pol)
        record("eb online k*", res, pol.k)
        rows["eb online k*"]["config"] = (f"eb online k* (start {k0}, end {pol.k}"
                                          f"{', fallback N//5' if pol.fallback_used else ''})")
    eb.close()
    mb.close()
    rows = list(rows.values())
    base = rows[0]["out_tok_per_s"]
    print(f"model={model} N={a.N} requests={a.num_requests} mean_in={wl.input_lens.mean():.0f} "
          f"mean_out={wl.output_lens.mean():.1f} step_timer={a.step_timer} wall={time.time() - t0:.0f}s")
    print(f"timing fit: {json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in vars(prof.timing).items()})}")
    print(f"{'config':44s} {'steps':>6s} {'prefill':>7s} {'total_s':>8s} {'req/s':>8s} {'tok/s':>8s} {'vs mb':>6s}  runs_s")
    for r in rows:
        print(f"{r['config']:44s} {r['steps']:6d} {r['prefill_steps']:7d} {r['total_s']:8.2f} "
              f"{r['req_per_s']:8.2f} {r['out_tok_per_s']:8.1f} {r['out_tok_per_s'] / base:6.2f}  {r['runs_s']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "timing": vars(prof.timing)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
