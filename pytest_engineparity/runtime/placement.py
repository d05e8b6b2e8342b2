"""GPU placement of the two engines: which devices each worker sees, and whether they can run at
the same time.

Each engine's config may say ``devices = [0, 1]``: its worker then gets
``CUDA_VISIBLE_DEVICES=0,1``. When both engines name devices and the sets are disjoint, the plugin
runs their batches concurrently; when they overlap, or either engine leaves its placement to the
driver, one after the other. Tensor parallelism is checked against the devices it needs.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..engines.base import EngineSpec, EngineSpecError

__all__ = ["parse_devices", "tensor_parallel_size", "check_placement", "schedule", "visible_gpu_count"]


def parse_devices(value: Any, where: str = "devices") -> Optional[list[int]]:
    """``[0, 1]``, ``"0,1"`` or ``None`` -> list of distinct non-negative GPU indices."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            items: Sequence[Any] = [int(p) for p in parts]
        except ValueError:
            raise EngineSpecError(f"{where}: {value!r} is not a comma-separated list of GPU indices") from None
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise EngineSpecError(f"{where}: expected a list of GPU indices, got {type(value).__name__}")
    out: list[int] = []
    for d in items:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise EngineSpecError(f"{where}: {d!r} is not a GPU index (an integer >= 0)")
        if d in out:
            raise EngineSpecError(f"{where}: GPU {d} is listed twice")
        out.append(d)
    if not out:
        raise EngineSpecError(f"{where}: the list of GPUs is empty")
    return out


def tensor_parallel_size(spec: EngineSpec) -> int:
    tp = spec.args.get("tensor_parallel_size", 1)
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise EngineSpecError(f"engine {spec.label!r}: tensor_parallel_size must be an integer >= 1, got {tp!r}")
    return tp


def visible_gpu_count() -> Optional[int]:
    """GPUs the driver reports (pynvml), or None when that cannot be known (no NVML)."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return 0  # the library is there but no driver: no GPU
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def check_placement(spec: EngineSpec, visible: Optional[int] = None, engine_dir_tp: Optional[int] = None) -> None:
    """Raise EngineSpecError when the engine cannot get the GPUs it needs.

    - ``devices`` must be valid, and each index must exist when the GPU count is known;
    - a tensor-parallel engine needs at least ``tensor_parallel_size`` GPUs (its devices if given,
      else every visible GPU);
    - a TensorRT-LLM engine dir was built for one tp size: the requested size must match it.
    """
    devices = parse_devices(spec.devices, f"engine {spec.label!r}: devices")
    tp = tensor_parallel_size(spec)
    if engine_dir_tp is not None:
        if "tensor_parallel_size" in spec.args and tp != engine_dir_tp:
            raise EngineSpecError(
                f"engine {spec.label!r}: tensor_parallel_size={tp} but the engine dir was built with "
                f"tp_size={engine_dir_tp}; rebuild it or set tensor_parallel_size={engine_dir_tp}")
        tp = engine_dir_tp
    if devices is not None and visible is not None:
        missing = [d for d in devices if d >= visible]
        if missing:
            raise EngineSpecError(f"engine {spec.label!r}: GPU(s) {missing} do not exist ({visible} visible)")
    have = len(devices) if devices is not None else visible
    if tp > 1 and have is not None and have < tp:
        where = f"its devices {devices}" if devices is not None else f"{visible} visible GPU(s)"
        raise EngineSpecError(f"engine {spec.label!r}: tensor parallelism {tp} needs {tp} GPUs, but it has {where}")


def schedule(a: EngineSpec, b: EngineSpec) -> str:
    """"concurrent" when both engines name disjoint device sets, else "sequential"."""
    da = parse_devices(a.devices, f"engine {a.label!r}: devices")
    db = parse_devices(b.devices, f"engine {b.label!r}: devices")
    if da is None or db is None:
        return "sequential"
    return "sequential" if set(da) & set(db) else "concurrent"
