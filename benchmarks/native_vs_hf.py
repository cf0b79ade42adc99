"""Native engine vs Hugging Face baselines, one process, one device, same weights.

(a) decode ms/step at batch 1, 16, 64, 256 with ~512-token contexts: native runner (paged KV,
    CUDA-graph decode), HF ``generate`` (eager loop, SDPA, dynamic cache) and HF static cache +
    its automatic ``torch.compile`` (CUDA only; on CPU the static cache runs uncompiled);
(b) 256 requests, input lengths uniform 32..512, 128 output tokens each (dataset termination):
    output tok/s of the native runner (wall time) vs HF ``generate_batch`` (continuous batching);
(c) bandwidth floor per decode step = (weight bytes + KV bytes read) / measured device-copy
    bandwidth, and each runner's ratio to it;
(d) greedy agreement: first step where native and HF ``generate`` outputs diverge.

GPU:  .venv/bin/python benchmarks/native_vs_hf.py --device cuda --config qwen3-1.7b
CPU smoke (tiny 2-layer Qwen3, fp32): .venv/bin/python benchmarks/native_vs_hf.py --device cpu --config tiny
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pdlib.engines.native import NativeEngine
from pdlib.engines.native.profiling import time_decode
from pdlib.models import TINY_QWEN3
from pdlib.policy import FixedK
from pdlib.workload import Request, Workload

TINY = dict(model_type="qwen3", **TINY_QWEN3)


def parse(argv=None):
    data = Path(os.environ.get("PDLIB_DATA_DIR", ROOT.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--config", choices=("qwen3-1.7b", "tiny"), default="qwen3-1.7b")
    p.add_argument("--model-dir", default=str(data / "models" / "qwen3-1.7b"))
    p.add_argument("--dtype", default=None, help="default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--decode-steps", type=int, default=None, help="timed decode steps (default 32 GPU, 8 CPU)")
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--input-range", type=int, nargs=2, default=[32, 512])
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--skip", nargs="*", default=[], choices=("eager", "static", "generate_batch"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on CPU: a shared, busy host spins badly with more)")
    p.add_argument("--json-out", default=None)
    return p.parse_args(argv)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev):
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t, out


def copy_bandwidth(dev, nbytes):
    """Device-to-device copy bandwidth, bytes moved = read + write."""
    x = torch.empty(nbytes // 2, dtype=torch.float16, device=dev)
    y = torch.empty_like(x)
    y.copy_(x)
    ts = [timed(lambda: y.copy_(x), dev)[0] for _ in range(10)]
    return 2 * nbytes / statistics.median(ts)


def hf_model(eng, attn="sdpa"):
    """An HF model (its own attention) sharing the native engine's weights."""
    cfg = copy.deepcopy(eng.hf_config)
    with torch.device("meta"):
        m = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=eng.model.dtype)
    m.load_state_dict(eng.model.state_dict(), assign=True, strict=False)
    m.tie_weights()
    for name, buf in eng.model.named_buffers():                    # rotary inv_freq
        mod, _, leaf = name.rpartition(".")
        m.get_submodule(mod).register_buffer(leaf, buf, persistent=False)
    return m.eval().requires_grad_(False)


class _Stamp(transformers.StoppingCriteria):
    """Records a (synchronised) timestamp after every generation step; never stops."""

    def __init__(self, dev):
        self.dev, self.t = dev, []

    def __call__(self, input_ids, scores, **kwargs):
        sync(self.dev)
        self.t.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def hf_decode_ms(m, B, ctx, steps, dev, static):
    """Median wall time between consecutive decode steps of ``generate`` (HF syncs every step anyway)."""
    gen = torch.Generator().manual_seed(B)
    ids = torch.randint(1, m.config.vocab_size - 1, (B, ctx), generator=gen).to(dev)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    if static:
        kw["cache_implementation"] = "static"

    def run(n):
        stamp = _Stamp(dev)
        gc = transformers.GenerationConfig(max_new_tokens=n, min_new_tokens=n, **kw)
        with torch.inference_mode():
            m.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc,
                       stopping_criteria=transformers.StoppingCriteriaList([stamp]))
        return np.diff(stamp.t)[1:]                                  # drop the prefill -> first decode gap
    run(min(steps, 8) + 2)                                         # warm-up (and compilation)
    return float(np.median(run(steps + 2))) * 1e3


def native_decode_ms(eng, B, ctx, steps, dev):
    """(median device-timed step, wall time per step over back-to-back steps) in ms."""
    device_ms = statistics.median(time_decode(eng.runner, B, ctx, repeats=steps)) * 1e3
    rids = [("w", i) for i in range(B)]
    for r in rids:
        eng.cache.allocate(r, ctx + 1)
    ids = torch.randint(1, eng.hf_config.vocab_size - 1, (B,), device=dev)
    pos = np.full(B, ctx, dtype=np.int64)
    eng.runner.decode(rids, ids, pos)

    def loop():
        for _ in range(steps):
            eng.runner.decode(rids, ids, pos)
    wall, _ = timed(loop, dev)
    eng.cache.reset()
    return device_ms, wall / steps * 1e3


def main(argv=None):
    a = parse(argv)
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(a.threads or 1)
    dtype = a.dtype or ("bf16" if dev.type == "cuda" else "fp32")
    steps = a.decode_steps or (32 if dev.type == "cuda" else 8)
    model = dict(TINY) if a.config == "tiny" else a.model_dir
    B_max, ctx = max(a.batches), a.context
    need = max(B_max * (ctx + steps + 2), a.requests * (a.input_range[1] + a.output_len + 1))
    max_len = max(ctx + steps + 2, a.input_range[1] + a.output_len + 1)
    eng = NativeEngine(model, weights="random", dtype=dtype, device=a.device, kv_capacity_tokens=need + 4096,
                       max_batch=max(B_max, a.requests), max_model_len=max_len)
    hf = hf_model(eng)
    mem = eng.memory()
    W, kvb = mem["weights_bytes"], eng.cache.bytes_per_token
    bw = copy_bandwidth(dev, 1 << 30 if dev.type == "cuda" else 1 << 27)
    hw = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"
    res = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "hardware": hw,
           "threads": torch.get_num_threads() if dev.type == "cpu" else None, "torch": torch.__version__, "transformers": transformers.__version__, "config": a.config,
           "dtype": dtype, "device": str(dev), "engine": eng.describe(), "weights_bytes": W,
           "kv_bytes_per_token": kvb, "copy_bandwidth_Bps": bw, "decode": [], "serving": {}}

    # (a) + (c)
    for B in a.batches:
        row = {"batch": B, "context": ctx}
        row["native_device_ms"], row["native_ms"] = native_decode_ms(eng, B, ctx, steps, dev)
        if "eager" not in a.skip:
            row["hf_eager_ms"] = hf_decode_ms(hf, B, ctx, steps, dev, static=False)
        if "static" not in a.skip:
            try:
                row["hf_static_ms"] = hf_decode_ms(hf, B, ctx, steps, dev, static=True)
            except Exception as e:                                   # report, do not hide
                row["hf_static_error"] = f"{type(e).__name__}: {e}"[:200]
        row["floor_ms"] = (W + B * (ctx + 1) * kvb) / bw * 1e3
        res["decode"].append(row)
        print(json.dumps(row), flush=True)

    # (b)
    rng = np.random.default_rng(0)
    lo, hi = a.input_range
    reqs = [Request(id=str(i), input_len=int(n), output_len=a.output_len,
                    prompt_ids=rng.integers(1, eng.hf_config.vocab_size - 1, int(n)).tolist())
            for i, n in enumerate(rng.integers(lo, hi + 1, a.requests))]
    wl = Workload("uniform", reqs)
    eng.run(Workload("warm", reqs[:8]), FixedK(8, 8))              # warm-up
    sync(dev)
    run = eng.run(wl, FixedK(N=a.requests, k=a.requests), termination="dataset", keep_output_ids=False)
    out_tokens = sum(r["output_len"] for r in run.requests)
    res["serving"]["spec"] = f"{a.requests} req, in {lo}..{hi}, out {a.output_len}"
    res["serving"]["native_tok_s"] = out_tokens / run.meta["wall_s"]
    res["serving"]["native_device_tok_s"] = run.output_tokens_per_s
    res["serving"]["native_wall_s"] = run.meta["wall_s"]
    if "generate_batch" not in a.skip:
        gc = transformers.GenerationConfig(max_new_tokens=a.output_len, do_sample=False, eos_token_id=None,
                                           pad_token_id=0)
        try:
            cb = None
            if dev.type == "cuda":       # it sizes its cache from free device memory
                torch.cuda.empty_cache()
            if dev.type == "cpu":        # on CPU its cache would be sized from host memory: bound it to the workload
                cb = transformers.ContinuousBatchingConfig(
                    num_blocks=-(-a.requests * (hi + a.output_len) // 256) + 16, max_batch_tokens=4096)
            hf.generate_batch(inputs=[r.prompt_ids for r in reqs[:8]], generation_config=gc,
                              continuous_batching_config=cb)                             # warm-up
            t, outs = timed(lambda: hf.generate_batch(inputs=[r.prompt_ids for r in reqs], generation_config=gc,
                                                      continuous_batching_config=cb), dev)
            n_hf = sum(len(o.generated_tokens) for o in outs.values())
            res["serving"].update(hf_generate_batch_tok_s=n_hf / t, hf_generate_batch_tokens=n_hf)
        except Exception as e:
            res["serving"]["hf_generate_batch_error"] = f"{type(e).__name__}: {e}"[:200]
    print(json.dumps(res["serving"]), flush=True)

    # (d) greedy agreement with HF generate (same weights)
    div = []
    for r in reqs[:4]:
        n = 32
        one = eng.run(Workload("div", [Request(r.id, r.input_len, n, r.prompt_ids)]), FixedK(1, 1))
        mine = one.requests[0]["output_ids"]
        gc = transformers.GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                           eos_token_id=None, pad_token_id=0)
        with torch.inference_mode():
            ref = hf.generate(torch.tensor([r.prompt_ids], device=dev), generation_config=gc)[0, r.input_len:].tolist()
        first = next((i for i, (x, y) in enumerate(zip(mine, ref)) if x != y), None)
        div.append({"id": r.id, "input_len": r.input_len, "first_divergence": first, "compared": n})
    res["divergence"] = div
    print(markdown(res))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(res, indent=2))
    return res


def _f(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(r):
    lines = [f"{r['date']} | {r['hardware']} | torch {r['torch']} | transformers {r['transformers']} | "
             f"config {r['config']} {r['dtype']} | attention {r['engine']['attn_backend']} | "
             f"CUDA graphs {r['engine']['cuda_graphs']} | copy bandwidth {r['copy_bandwidth_Bps'] / 1e9:.1f} GB/s | "
             f"weights {r['weights_bytes'] / 1e9:.3f} GB | KV {r['kv_bytes_per_token']} B/token", "",
             "| batch | ctx | floor ms | native ms (device) | native ms (wall) | native/floor | HF eager ms | eager/native | "
             "HF static ms | static/native |", "|---|---|---|---|---|---|---|---|---|---|"]
    for d in r["decode"]:
        n, e, s = d["native_ms"], d.get("hf_eager_ms"), d.get("hf_static_ms")
        lines.append(f"| {d['batch']} | {d['context']} | {_f(d['floor_ms'], 3)} | {_f(d['native_device_ms'], 3)} | {_f(n, 3)} | "
                     f"{_f(n / d['floor_ms'])} | {_f(e, 3)} | {_f(e / n if e else None)} | {_f(s, 3)} | "
                     f"{_f(s / n if s else None)} |")
    sv = r["serving"]
    hb = sv.get("hf_generate_batch_tok_s")
    lines += ["", f"| serving ({sv['spec']}) | output tok/s | ratio |", "|---|---|---|",
              f"| native (wall) | {sv['native_tok_s']:.0f} | {_f(sv['native_tok_s'] / hb if hb else None)}x |",
              f"| HF generate_batch | {_f(hb, 0)} | 1 |"]
    if "hf_generate_batch_error" in sv:
        lines.append(f"\ngenerate_batch failed: {sv['hf_generate_batch_error']}")
    errs = [d["hf_static_error"] for d in r["decode"] if "hf_static_error" in d]
    if errs:
        lines.append(f"\nHF static cache failed: {errs[0]}")
    lines.append("\nfirst greedy divergence vs HF generate (step index, None = identical over "
                 f"{r['divergence'][0]['compared']} tokens): "
                 + ", ".join(f"req {d['id']} (in {d['input_len']}): {d['first_divergence']}" for d in r["divergence"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
