"""GPU memory of a worker and every process it started (tensor-parallel ranks run in child
processes), read from NVML on the pytest side. No NVML, no GPU, or a process NVML cannot see
(another PID namespace): None, never a guess."""

from __future__ import annotations

import warnings
from typing import Optional

from .files import process_tree

__all__ = ["process_tree", "gpu_memory_bytes"]


_NVML_OK: list = []  # [] untried, [False] no NVML here


def gpu_memory_bytes(pid: Optional[int]) -> Optional[int]:
    """GPU memory held by a process and its children now (NVML), or None without a GPU / NVML /
    a visible process (e.g. another PID namespace)."""
    if pid is None or _NVML_OK == [False]:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pynvml  # nvidia-ml-py
        pynvml.nvmlInit()
    except Exception:
        _NVML_OK[:] = [False]
        return None
    try:
        pids = set(process_tree(pid))
        total, seen = 0, False
        for i in range(int(pynvml.nvmlDeviceGetCount())):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    procs = getattr(pynvml, getter)(h)
                except Exception:
                    continue
                for p in procs:
                    if int(p.pid) in pids and getattr(p, "usedGpuMemory", None):
                        total += int(p.usedGpuMemory)
                        seen = True
        return total if seen else None
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
