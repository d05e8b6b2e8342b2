"""tensorrt_llm.llmapi (contract double): the two config objects the contract names.

Contract, "Two LLM classes": ``kv_cache_config=KvCacheConfig(free_gpu_memory_fraction=…)`` is an
LLM kwarg, and only the TensorRT class accepts ``build_config=BuildConfig(...)``. The contract does
not name their module; ``tensorrt_llm.llmapi`` is where TensorRT-LLM exports both.
BuildConfig's fields are the ``build_config`` keys listed under "Engine directory".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["KvCacheConfig", "BuildConfig"]


@dataclass(kw_only=True)
class KvCacheConfig:
    """KV-cache settings. The double has no GPU memory: the fraction is validated and recorded."""

    free_gpu_memory_fraction: Optional[float] = None

    def __post_init__(self) -> None:
        f = self.free_gpu_memory_fraction
        if f is not None and not 0.0 < f <= 1.0:
            raise ValueError(f"free_gpu_memory_fraction must be in (0, 1], got {f!r}")


@dataclass(kw_only=True)
class BuildConfig:
    """Build limits of a TensorRT engine (contract: "Engine directory", build_config keys)."""

    max_input_len: int = 1024
    max_seq_len: Optional[int] = None  # None: max_input_len + 1024 (NOT IN CONTRACT: a default)
    max_batch_size: int = 2048
    max_num_tokens: int = 8192
    max_beam_width: int = 1
    kv_cache_type: Optional[str] = None
    gather_context_logits: bool = False
    gather_generation_logits: bool = False
    plugin_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_seq_len is None:
            self.max_seq_len = self.max_input_len + 1024
        for name in ("max_input_len", "max_seq_len", "max_batch_size", "max_num_tokens", "max_beam_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BuildConfig.{name} must be a positive integer, got {value!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BuildConfig":
        """The ``build_config`` object of an engine's config.json (unknown keys are ignored)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
