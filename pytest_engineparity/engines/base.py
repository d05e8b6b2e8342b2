"""The one interface every engine adapter implements, and the spec that configures it.

Adapters live one per file in this package and are found through the entry-point group
``pytest_engineparity.engines`` (see ``registry``). An adapter module must not import its engine
package (torch, vllm, tensorrt_llm, ...) at module level: the plugin imports adapters in the pytest
process only to validate specs; the heavy imports happen inside ``start()``, in the worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Protocol, Sequence, runtime_checkable

from ..types import Completion, EngineInfo, GenerationRequest

__all__ = ["EngineSpec", "Engine", "EngineSpecError", "ProgressFn"]

# progress(done_requests, total_requests, generated_tokens)
ProgressFn = Callable[[int, int, int], None]


class EngineSpecError(ValueError):
    """A spec that cannot work (unknown kind, missing model dir, bad interpreter, bad args)."""


@dataclass
class EngineSpec:
    """How to start one engine. Built from ``--engine-pair`` / ``--engine-config``."""

    kind: str
    target: Optional[str] = None  # model dir, engine dir, or base URL
    name: Optional[str] = None  # the label used in reports
    tokenizer: Optional[str] = None
    python: Optional[str] = None  # interpreter for the worker (another venv)
    args: dict = field(default_factory=dict)  # engine constructor arguments
    api_key_env: Optional[str] = None  # name of the env var holding an API key (openai)
    env: dict = field(default_factory=dict)  # extra environment for the worker
    start_timeout: float = 900.0  # seconds to wait for the engine to come up
    request_timeout: float = 600.0  # seconds without any sign of life during generate
    devices: Optional[list] = None  # GPU indices for this worker (CUDA_VISIBLE_DEVICES)

    @property
    def label(self) -> str:
        return self.name or (f"{self.kind}:{self.target}" if self.target else self.kind)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineSpec":
        return cls(**d)

    def public_dict(self) -> dict[str, Any]:
        """For reports: never contains secrets (only the *name* of the key variable)."""
        d = self.to_dict()
        d["env"] = sorted(self.env)  # names only: values may be secrets
        return d


@runtime_checkable
class Engine(Protocol):
    """An engine adapter. One instance runs inside one worker process."""

    kind: ClassVar[str]

    def __init__(self, spec: EngineSpec) -> None: ...

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        """Cheap checks in the pytest process (no heavy imports); raise EngineSpecError."""

    def start(self) -> EngineInfo:
        """Load the model / connect; return what the engine says about itself."""

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None
    ) -> list[Completion]:
        """Run the whole batch; one Completion per request, in order.

        A request the engine rejects gives a Completion with ``error`` set; it does not raise.
        """

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with this engine's tokenizer (no special tokens added)."""

    def close(self) -> None:
        """Release the engine (the worker process exits right after)."""
