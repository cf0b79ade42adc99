"""Put first on PYTHONPATH by pdlib for vLLM's spawned CPU engine-core process: ask Linux for
AMX tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA) before torch loads, else
the bf16 AMX attention kernel can die with SIGILL in a spawned worker. Harmless elsewhere."""
import ctypes
import platform

if platform.system() == "Linux" and platform.machine() == "x86_64":
    try:
        ctypes.CDLL(None).syscall(158, 0x1023, 18)   # SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    except Exception:
        pass
