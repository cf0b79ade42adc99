"""Native engine profiling (fits with R^2, seed 004's latency grid CSV), the ``pdlib profile``
command, and the paged KV cache's bookkeeping — on CPU with the tiny fixture."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pdlib.engines.native import KVCache, KVCapacityError, NativeEngine

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def engine(tiny_qwen3_dir):
    return NativeEngine(str(tiny_qwen3_dir), dtype="fp32", device="cpu", kv_capacity_tokens=4096)


def test_profile_fits_and_samples(engine):
    prof = engine.profile(prefill_tokens=[16, 64, 256], decode_batches=[1, 8], context_lens=[16, 128],
                          repeats=2)
    assert len(prof.prefill) == 3 * 2 and len(prof.decode) == 2 * 2 * 2
    assert {r["tokens"] for r in prof.prefill} == {16, 64, 256}
    assert {(r["batch"], r["context_len"]) for r in prof.decode} == {(b, c) for b in (1, 8) for c in (16, 128)}
    t = prof.timing
    assert all(math.isfinite(x) and x >= 0 for x in (t.alpha_p, t.beta_p, t.alpha_d, t.beta_d))
    assert math.isfinite(t.r2_prefill) and math.isfinite(t.r2_decode) and t.r2_prefill <= 1
    assert all(r["seconds"] > 0 for r in prof.prefill + prof.decode)
    assert set(prof.decode_context_effect()) >= {"r2_two_term", "r2_with_context"}
    assert prof.meta["engine"] == "native" and prof.meta["skipped"] == []
    assert engine.cache.tokens_held == 0
    # a combination larger than the KV capacity is skipped with its reason, not run
    big = engine.profile(prefill_tokens=[16, 32], decode_batches=[1, 2, 64], context_lens=[100], repeats=1,
                         prefill_requests=2)
    assert {r["num_requests"] for r in big.prefill} == {2}
    assert any("decode batch 64 x context 100" in s for s in big.meta["skipped"])
    assert {r["batch"] for r in big.decode} == {1, 2}


def test_latency_grid_csv_and_fit(engine, tmp_path):
    path = tmp_path / "grid.csv"
    _rows, fit, skipped = engine.latency_grid(batches=(1, 4), seq_lens=(32, 128, 512), trials=2, csv_path=path)
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["batch_size", "max_seq_len", "mean_latency", "std_latency"]
    assert len(got) == 6 and not skipped
    assert [(int(r["batch_size"]), int(r["max_seq_len"])) for r in got] == [(b, L) for b in (1, 4)
                                                                             for L in (32, 128, 512)]
    assert all(float(r["mean_latency"]) > 0 and float(r["std_latency"]) >= 0 for r in got)
    assert math.isfinite(fit.r2) and math.isfinite(fit.a)


def test_cli_profile(tiny_qwen3_dir, tmp_path, capsys):
    from pdlib.cli import main
    out = tmp_path / "prof.json"
    rc = main(["profile", "--engine", "native", "--model", str(tiny_qwen3_dir), "--device", "cpu",
               "--dtype", "fp32", "--prefill-tokens", "16", "64", "--batches", "1", "4",
               "--context-lens", "16", "--repeats", "2", "--json", "-o", str(out)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prefill_samples"] == 4 and summary["decode_samples"] == 4
    data = json.loads(out.read_text())
    assert set(data) >= {"prefill", "decode", "timing", "meta", "decode_context_effect"}
    assert data["timing"]["alpha_d"] == summary["alpha_d"]
    rc = main(["profile", "--engine", "native", "--model", str(tmp_path / "missing"), "--device", "cpu",
               "-o", str(tmp_path / "x.json")])
    assert rc == 2 and "no config.json" in capsys.readouterr().err


def test_kv_cache_pages_and_refusals():
    c = KVCache(num_layers=2, kv_heads=2, head_dim=4, dtype=torch.float32, device="cpu", capacity_tokens=70,
                page_size=16)
    assert c.capacity_tokens == 64 and c.num_pages == 4 and c.bytes_per_token == 2 * 2 * 2 * 4 * 4
    c.allocate("a", 17)                                    # 2 pages
    c.allocate("b", 5)                                     # 1 page
    assert (c.tokens_held, c.pages_held, c.page_tokens_held, c.free_tokens) == (22, 3, 48, 16)
    np.testing.assert_array_equal(c.slots("a", 14, 18), [14, 15, 16, 17])
    np.testing.assert_array_equal(c.slots("b", 0, 2), [32, 33])
    c.grow("b", 11)                                        # still one page
    assert c.pages_held == 3
    c.grow("b", 1)                                         # 17 tokens -> second page
    assert c.pages_held == 4 and c.free_tokens == 0
    with pytest.raises(KVCapacityError, match=r"'a' needs 1 more KV page.*0 are free.*34 of 64 tokens held"):
        c.grow("a", 16)
    with pytest.raises(KVCapacityError, match=r"'c' needs 1 KV tokens \(1 pages\).*0 pages are free"):
        c.allocate("c", 1)
    bt = c.block_table(["a", "b"], width=3)
    assert bt.tolist() == [[0, 1, c.scratch_page], [2, 3, c.scratch_page]]
    c.free("a")
    assert c.tokens_held == 17 and c.free_tokens == 32 and "a" not in c.pages
    c.reset()
    assert c.tokens_held == 0 and c.pages_held == 0
    assert KVCache.tokens_for_bytes(10_000, 100, 16) == 96
    with pytest.raises(KVCapacityError, match="less than one page"):
        KVCache(num_layers=1, kv_heads=1, head_dim=4, dtype=torch.float32, device="cpu", capacity_tokens=8,
                page_size=16)


def test_memory_report(engine):
    m = engine.memory()
    n_params = sum(p.numel() for p in engine.model.parameters())        # tied embeddings counted once
    n_buffers = sum(b.numel() for b in engine.model.buffers())          # rotary inv_freq
    assert m["weights_bytes"] == (n_params + n_buffers) * 4 and n_buffers < n_params // 1000
    assert m["kv_pool_bytes"] == (engine.cache.num_pages + 1) * engine.cache.page_size * m["kv_bytes_per_token"]
    assert m["kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 4   # 2 x layers x kv_heads x head_dim x fp32
    assert m["activation_peak_bytes"] is None and "CPU" in m["activation_peak_reason"]


def test_graph_buckets_and_page_widths():
    from pdlib.engines.native.graphs import DecodeGraphs, default_buckets
    assert default_buckets(256)[:6] == [1, 2, 4, 8, 16, 32] and default_buckets(256)[-1] == 256
    assert default_buckets(20) == [1, 2, 4, 8, 16, 20]
    g = DecodeGraphs(None, max_batch=20, max_pages=40, scratch_page=99, page_size=16, device="cpu",
                     page_buckets=True)
    assert [g.bucket(b) for b in (1, 3, 9, 17, 20, 21)] == [1, 4, 16, 20, 20, None]
    assert [g.width(p) for p in (1, 2, 3, 17, 33, 40)] == [1, 2, 4, 32, 40, 40]
    assert g.block_table.shape == (20, 40) and int(g.slot_mapping[0]) == 99 * 16   # padded rows -> scratch page
    full = DecodeGraphs(None, max_batch=8, max_pages=40, scratch_page=99, page_size=16, device="cpu",
                        page_buckets=False)
    assert full.width(3) == 40
