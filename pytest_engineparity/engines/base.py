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

__all__ = ["EngineSpec", "Engine", "EngineSpecError", "ProgressFn", "Capabilities", "check_model_dir"]

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
    explicit: list = field(default_factory=list)  # keys the engine table set itself (they win over options)

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


@dataclass(frozen=True)
class Capabilities:
    """What an adapter is and what it can return: everything outside ``engines/`` that needs to
    know about a kind asks this, never the kind name.

    Declared by the adapter (``capabilities(spec)``); where a fact can only be known once the
    engine runs (a server that drops logprobs), the adapter corrects it in ``EngineInfo.details``.
    """

    transport: str = "in-process"  # or "http": the worker is a client of a server
    limits_source: str = ""  # where EngineInfo.limits come from, for the report's limits table
    packages: tuple = ()  # (label, (distribution names...)) to fingerprint for this kind
    embedded_args: Optional[dict] = None  # args to run the embedded default model; None: cannot
    url_target: bool = False  # an inline target is a URL, not a path
    compiled_engine_dir: bool = False  # a target can be a compiled engine tied to the build machine
    token_ids: bool = True  # returns output token ids
    prompt_token_ids: bool = True  # returns the prompt token ids it used
    logprobs_top_k: int = 20  # most top-k logprobs per token it can return (0: none)
    per_token_timings: bool = True
    seeds_honoured: bool = True
    truncate_prompt_tokens_text: bool = True
    truncate_prompt_tokens_ids: bool = True
    tokenize: bool = True
    notes: tuple = ()  # human-readable caveats shown in the report

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["packages"] = [list(p) if not isinstance(p, str) else p for p in d["packages"]]
        return d


def check_model_dir(spec: "EngineSpec") -> None:
    """A local Hugging Face model dir must exist and hold a config.json (hub names are never
    downloaded). Shared by the adapters that load such a dir."""
    import os

    if not spec.target:
        raise EngineSpecError(f"engine {spec.label!r}: no model directory given")
    if not os.path.isdir(spec.target):
        raise EngineSpecError(f"engine {spec.label!r}: model directory {spec.target!r} does not exist")
    if not os.path.isfile(os.path.join(spec.target, "config.json")):
        raise EngineSpecError(
            f"engine {spec.label!r}: {spec.target!r} has no config.json (not a Hugging Face model dir)"
        )


@runtime_checkable
class Engine(Protocol):
    """An engine adapter. One instance runs inside one worker process."""

    kind: ClassVar[str]
    CAPABILITIES: ClassVar[Capabilities]

    def __init__(self, spec: EngineSpec) -> None: ...

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        """What this adapter can return for ``spec`` (no engine import, no I/O)."""

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
