"""Built-in GPU table: device memory and memory bandwidth, for the seed-004 budget.

Memory is the marketed capacity; NVIDIA's "GB" for device memory is GiB (2**30 bytes)
of DRAM, of which the driver keeps a few hundred MiB (nvidia-smi on an H100 80GB reports
81,559 MiB = 79.6 GiB). Bandwidth is the vendor's peak DRAM figure in bytes/s (decimal),
plus, where one was measured, an achieved device-to-device copy rate.

There is no 12 GB desktop RTX 4080: the card announced as "RTX 4080 12GB" was withdrawn
(and shipped as the RTX 4070 Ti). Seed 004 nevertheless budgets a "RTX 4080 12GB" with the
16 GB desktop card's other figures (GDDR6X, 9,728 CUDA cores, 716.8 GB/s, 320 W); it is kept
here as ``rtx4080-12gb-hypothetical`` with ``hypothetical=True`` so the seed's case can be
shown beside the real cards.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

GiB = 2 ** 30


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_bytes: int
    bandwidth_Bps: float                 # peak DRAM bandwidth, bytes/s
    memory_type: str
    hypothetical: bool = False
    measured_copy_Bps: float | None = None
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GiB

    def as_dict(self) -> dict:
        d = asdict(self)
        d["memory_gib"] = self.memory_gib
        d["bandwidth_GBps"] = self.bandwidth_Bps / 1e9
        return d


def _g(key, name, gib, gbps, mem, **kw):
    return GPU(key, name, int(gib * GiB), gbps * 1e9, mem, **kw)


GPUS: dict[str, GPU] = {g.key: g for g in (
    _g("rtx4080", "NVIDIA GeForce RTX 4080 (desktop) 16 GB", 16, 716.8, "GDDR6X",
       note="256-bit x 22.4 Gbps"),
    _g("rtx4080-laptop", "NVIDIA GeForce RTX 4080 Laptop GPU 12 GB", 12, 432.0, "GDDR6",
       note="192-bit x 18 Gbps; laptop clocks vary by OEM"),
    _g("rtx4080-12gb-hypothetical", 'Seed 004\'s hypothetical "RTX 4080 12GB" (no such desktop card)',
       12, 716.8, "GDDR6X", hypothetical=True,
       note="seed 004's stated numbers: 12 GB with the 16 GB desktop card's 716.8 GB/s"),
    _g("rtx4090", "NVIDIA GeForce RTX 4090 24 GB", 24, 1008.0, "GDDR6X", note="384-bit x 21 Gbps"),
    _g("l40s", "NVIDIA L40S 48 GB", 48, 864.0, "GDDR6 (ECC)"),
    _g("a100-40gb", "NVIDIA A100 40GB (SXM4)", 40, 1555.0, "HBM2"),
    _g("a100-80gb", "NVIDIA A100 80GB (SXM4)", 80, 2039.0, "HBM2e", note="PCIe version: 1,935 GB/s"),
    _g("h100-80gb", "NVIDIA H100 80GB (SXM5)", 80, 3350.0, "HBM3", measured_copy_Bps=3.02e12,
       note="3.35 TB/s spec; 3.02 TB/s measured device copy (PyTorch 2.11, design brief); "
            "PCIe version: 2.0 TB/s"),
    _g("h200", "NVIDIA H200 141 GB (SXM)", 141, 4800.0, "HBM3e"),
)}

ALIASES = {"rtx-4080": "rtx4080", "4080": "rtx4080", "rtx4080-16gb": "rtx4080",
           "rtx4080-mobile": "rtx4080-laptop", "rtx4080-12gb": "rtx4080-12gb-hypothetical",
           "seed004": "rtx4080-12gb-hypothetical", "rtx-4090": "rtx4090", "4090": "rtx4090",
           "a100": "a100-80gb", "h100": "h100-80gb", "h100-sxm": "h100-80gb", "h200-141gb": "h200"}


def gpu_names() -> list[str]:
    return list(GPUS)


def get_gpu(name: str | GPU) -> GPU:
    """A GPU from the table by key (case-insensitive; a few aliases such as ``h100``).
    Unknown names raise ValueError listing the valid ones."""
    if isinstance(name, GPU):
        return name
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    key = ALIASES.get(key, key)
    if key not in GPUS:
        raise ValueError(f"unknown GPU {name!r}; valid names: {', '.join(GPUS)} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return GPUS[key]


def gpu_table():
    """The table as a pandas DataFrame (one row per GPU)."""
    import pandas as pd
    rows = []
    for g in GPUS.values():
        rows.append({"gpu": g.key, "name": g.name, "memory_GiB": g.memory_gib,
                     "memory_bytes": g.memory_bytes, "memory_type": g.memory_type,
                     "bandwidth_GBps": g.bandwidth_Bps / 1e9,
                     "measured_copy_GBps": g.measured_copy_Bps / 1e9 if g.measured_copy_Bps else None,
                     "hypothetical": g.hypothetical, "note": g.note})
    return pd.DataFrame(rows)
