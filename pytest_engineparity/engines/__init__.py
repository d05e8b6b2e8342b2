"""Engine adapters, one per file, behind the ``Engine`` protocol in ``base``."""

from .base import Engine, EngineSpec, EngineSpecError

__all__ = ["Engine", "EngineSpec", "EngineSpecError"]
