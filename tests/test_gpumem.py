"""GPU memory of a worker's whole process tree (tensor-parallel ranks are child processes): NVML
is replaced by a small fake module answering for real processes of this machine (this test and a
child it starts), as NVML lists them on a four-GPU box; the process tree is read from /proc."""

import subprocess
import sys
import types
from typing import Any

import pytest

from pytest_engineparity.runtime import gpumem


def _nvml(per_gpu: list[list[tuple[int, int]]]) -> Any:
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: len(per_gpu)  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [  # type: ignore[attr-defined]
        types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in per_gpu[h]]
    m.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []  # type: ignore[attr-defined]
    return m


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield p.pid
    p.kill()
    p.wait()


def test_a_worker_and_its_rank_processes_are_summed_over_gpus(monkeypatch, child) -> None:
    import os

    me = os.getpid()
    assert child in gpumem.process_tree(me)
    gib = 2**30
    # GPU 0: the worker itself (rank 0); GPUs 1-2: a rank in its child; GPU 3: someone else
    nvml = _nvml([[(me, 20 * gib)], [(child, 7 * gib)], [(child, 7 * gib), (1, 5 * gib)], [(1, 40 * gib)]])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(gpumem, "_NVML_OK", [])
    assert gpumem.gpu_memory_bytes(me) == 34 * gib
    assert gpumem.gpu_memory_bytes(child) == 14 * gib
    assert gpumem.gpu_memory_bytes(None) is None


def test_no_nvml_means_no_number(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monkeypatch.setattr(gpumem, "_NVML_OK", [])
    import os

    assert gpumem.gpu_memory_bytes(os.getpid()) is None
