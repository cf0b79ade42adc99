"""Building the vLLM engine for ``VLLMEngine``: environment, ``EngineArgs``, scheduler class.

Environment set before vLLM starts (only where the user has not set them):
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the in-process/multiprocess choice is passed to
``LLMEngine`` directly), ``VLLM_CACHE_ROOT``/``VLLM_RPC_BASE_PATH`` under the engine's work
folder (each engine leaves socket files), ``CUDA_VISIBLE_DEVICES`` from ``devices``. On the
CPU platform in multiprocess mode, ``sitecustomize.py`` from ``cpu_site/`` is put first on
``PYTHONPATH`` so the spawned engine-core process asks Linux for AMX tile permission
before torch loads (without it the bf16 AMX attention kernel dies with SIGILL).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULERS = {
    ("eb", False): "pdlib.engines.vllm.scheduler.ExclusiveBatchingScheduler",
    ("eb", True): "pdlib.engines.vllm.scheduler.AsyncExclusiveBatchingScheduler",
    ("mb", False): "pdlib.engines.vllm.scheduler.TelemetryScheduler",
    ("mb", True): "pdlib.engines.vllm.scheduler.AsyncTelemetryScheduler",
}

CPU_SITE = Path(__file__).resolve().parent / "cpu_site"

POLICY_DIFFERENCES = [
    ("vLLM samples a request's first output token at the end of its prefill step, so a request "
     "with L output tokens needs L-1 decode steps (the native runner and the simulator do the same)."),
    ("Each prefill-only step pauses every running request for one step (vLLM's model runner also "
     "drops and re-adds the paused decoders to its persistent batch: a real switch cost)."),
    ("Preemption (KV pressure): vLLM preempts the newest running request; it returns to the front of "
     "the queue and is re-prefilled (prompt + generated tokens) at the next refill, taking one of its "
     "slots. A preempted request is not a completion, so the policy does not learn from it."),
    ("A refill is capped when the first waiting request's whole sequence does not fit in the free KV "
     "blocks (decode continues instead of an empty step); a refill whose prompts exceed one step's "
     "token budget spans several prefill-only steps (same 'refill' number in step_details)."),
    ("Async scheduling (GPU default): schedule(t+1) runs before update_from_output(t), so completions "
     "reach the policy one step late."),
]


@dataclass
class Built:
    max_num_seqs: int
    vocab_size: int
    max_model_len: int
    block_size: int
    num_blocks: int
    kv_bytes_per_token: int | None
    platform: str
    async_scheduling: bool
    scheduler_cls: str
    multiprocess: bool
    tensor_parallel_size: int
    dtype: str
    telemetry_path: str | None
    details: object = None
    engine_args: dict = field(default_factory=dict)

    def describe(self) -> dict:
        import vllm
        return {"version": vllm.__version__, "platform": self.platform, "scheduler_cls": self.scheduler_cls,
                "async_scheduling": self.async_scheduling, "multiprocess": self.multiprocess,
                "tensor_parallel_size": self.tensor_parallel_size, "dtype": self.dtype,
                "block_size": self.block_size, "num_blocks": self.num_blocks,
                "kv_capacity_tokens": self.num_blocks * self.block_size, "max_num_seqs": self.max_num_seqs,
                "max_model_len": self.max_model_len, "kv_bytes_per_token": self.kv_bytes_per_token,
                "engine_args": self.engine_args}


def has_tokenizer(model: str) -> bool:
    """A local model folder without tokenizer files needs ``skip_tokenizer_init``."""
    p = Path(model)
    if not p.is_dir():
        return True        # a hub id: its tokenizer comes with it
    return any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                           "tokenizer.model"))


def _set_env(options: dict, workdir: Path) -> None:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    for var, sub in (("VLLM_CACHE_ROOT", "cache"), ("VLLM_RPC_BASE_PATH", "rpc")):
        if var not in os.environ:
            (workdir / sub).mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(workdir / sub)
    if options["devices"] is not None:
        want = str(options["devices"])
        have = os.environ.get("CUDA_VISIBLE_DEVICES")
        import sys
        if have != want and "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            raise RuntimeError(f"devices={want!r}: CUDA is already initialised in this process with "
                               f"CUDA_VISIBLE_DEVICES={have!r}; set it before importing torch or use a new process")
        os.environ["CUDA_VISIBLE_DEVICES"] = want


def build_engine(model: str, mode: str, options: dict, num_slots: int, workdir: Path):
    """Create the ``LLMEngine`` with pdlib's scheduler class; returns (engine, Built)."""
    from .version import check_vllm_version
    check_vllm_version()               # the tested vLLM, before vLLM builds anything
    workdir.mkdir(parents=True, exist_ok=True)
    _set_env(options, workdir)
    from vllm import envs
    envs.disable_envs_cache()          # a previous engine froze the environment; read it afresh
    from vllm.engine.arg_utils import EngineArgs
    from vllm.platforms import current_platform
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.llm_engine import LLMEngine
    from vllm.v1.executor import Executor

    on_cpu = current_platform.device_type == "cpu"
    multiprocess = options["multiprocess"]
    if on_cpu and multiprocess and str(CPU_SITE) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(CPU_SITE), os.environ.get("PYTHONPATH")) if p)
    block_size = options["block_size"]
    if on_cpu and block_size is not None and block_size % 32:
        raise ValueError(f"block_size={block_size}: vLLM on CPU needs a multiple of 32")
    max_num_seqs = int(options["max_num_seqs"] or num_slots)
    if max_num_seqs < num_slots:
        raise ValueError(f"the policy needs N={num_slots} slots but max_num_seqs={max_num_seqs}")
    telemetry = str(workdir / f"telemetry-{os.getpid()}-{id(options)}.jsonl") if multiprocess else None
    skip_tok = options["skip_tokenizer_init"]
    if skip_tok is None:
        skip_tok = not has_tokenizer(model)
    kw = dict(model=model, dtype=options["dtype"], seed=options["seed"], max_num_seqs=max_num_seqs,
              tensor_parallel_size=options["tensor_parallel_size"], skip_tokenizer_init=skip_tok,
              enable_prefix_caching=options["enable_prefix_caching"],
              disable_log_stats=not options["iteration_details"],
              additional_config={"pdlib": {"mode": mode, "telemetry_path": telemetry}})
    for name in ("block_size", "kv_cache_memory_bytes", "max_num_batched_tokens", "max_model_len",
                 "enforce_eager", "enable_chunked_prefill", "async_scheduling", "gpu_memory_utilization"):
        if options[name] is not None:
            kw[name] = options[name]
    if on_cpu and "kv_cache_memory_bytes" not in kw and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        kw["kv_cache_memory_bytes"] = 256 << 20
    if on_cpu and "enforce_eager" not in kw:
        kw["enforce_eager"] = True
    if options["iteration_details"]:
        kw["enable_logging_iteration_details"] = True
    if os.environ.get("PDLIB_VLLM_DISTRIBUTED_BACKEND"):      # set by pdlib.grid_ray for a multi-GPU cell
        kw["distributed_executor_backend"] = os.environ["PDLIB_VLLM_DISTRIBUTED_BACKEND"]
    kw.update(options["engine_kwargs"])     # pipeline_parallel_size, distributed_executor_backend, ...
    args = EngineArgs(**kw)
    vllm_config = args.create_engine_config(UsageContext.ENGINE_CONTEXT)
    pg = ray_placement_group()
    if pg is not None:
        vllm_config.parallel_config.placement_group = pg
    is_async = bool(vllm_config.scheduler_config.async_scheduling)
    sched_cls = SCHEDULERS[(mode, is_async)]
    vllm_config.scheduler_config.scheduler_cls = sched_cls
    details = None
    stat_loggers = None
    if options["iteration_details"]:
        from .stats import IterationDetailsFactory
        details = IterationDetailsFactory()
        stat_loggers = [details]
    engine = LLMEngine(vllm_config=vllm_config, executor_class=Executor.get_class(vllm_config),
                       log_stats=options["iteration_details"], usage_context=UsageContext.ENGINE_CONTEXT,
                       stat_loggers=stat_loggers, multiprocess_mode=multiprocess)
    mc = vllm_config.model_config
    try:
        from ...theory import kv_bytes_per_token
        kvb = kv_bytes_per_token(mc.hf_config.to_dict(), str(mc.dtype))   # whole model, all TP ranks
    except (ValueError, KeyError):
        kvb = None
    built = Built(max_num_seqs=max_num_seqs, vocab_size=int(mc.get_vocab_size()), max_model_len=int(mc.max_model_len),
                  block_size=int(vllm_config.cache_config.block_size),
                  num_blocks=max(0, int(vllm_config.cache_config.num_gpu_blocks or 0) - 1),   # 0: unknown
                  kv_bytes_per_token=kvb, platform=current_platform.device_type, async_scheduling=is_async,
                  scheduler_cls=sched_cls, multiprocess=multiprocess,
                  tensor_parallel_size=options["tensor_parallel_size"], dtype=str(mc.dtype).replace("torch.", ""),
                  telemetry_path=telemetry, details=details,
                  engine_args={k: v for k, v in kw.items() if k != "additional_config"})
    return engine, built


def ray_placement_group():
    """The placement group ``pdlib.grid_ray`` reserved for a cell spanning nodes
    (``PDLIB_RAY_PLACEMENT_GROUP`` = namespace/name, cluster at ``RAY_ADDRESS``), else None."""
    ref = os.environ.get("PDLIB_RAY_PLACEMENT_GROUP")
    if not ref:
        return None
    import ray
    namespace, _, name = ref.rpartition("/")
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace=namespace or None, log_to_driver=False)
    return ray.util.get_placement_group(name)


def read_telemetry(path: str | None, run_id: str) -> list[dict]:
    """The scheduler's JSONL rows of one run (multiprocess mode)."""
    if not path or not os.path.exists(path):
        return []
    rows = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                row = json.loads(line)
                if row.get("run") == run_id:
                    rows.append(row)
    return rows
