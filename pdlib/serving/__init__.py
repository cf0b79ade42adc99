"""Serving memory-pressure profiler (seed 003): memory pressure of a running OpenAI-compatible
server (vLLM), observed from outside.

- ``config``: ``ServingConfig`` and ``from_env()`` (the seed's env vars, CLI flags override).
- ``workload``: the grid -> ``workload.jsonl``; prompts of exact token lengths; prefix reuse low|high.
- ``requests``: async streaming runner -> ``request_trace.csv`` (one row per request whatever the
  server sends, ``outcome`` says what happened); ``run_sync`` also inside a running event loop.
- ``samplers``: NVML GPU memory -> ``gpu_mem_trace.csv``; Prometheus ``/metrics`` -> ``kv_trace.csv``
  (a scraper process of its own; each row with the time sent and answered).
- ``orchestrator``: ``run_profile(cfg)`` -> ``<OUTPUT_DIR>/<run_id>/`` with summary.json (peaks per
  condition with ``kv_samples``, null with ``kv_note`` when unsampled) and manifest.json, written on
  every exit (errors, Ctrl-C).
- ``server``: ``VLLMServer`` starts/stops a local ``vllm serve`` (CPU-safe settings), ``build_tiny_model``.
- ``plots``: ``load_run``, ``plot_timeline``, ``summary_table``.
CLI: ``pdlib serve-profile {workload,sample,requests,run,plot}``.
"""
