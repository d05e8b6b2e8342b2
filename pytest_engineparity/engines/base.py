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

__all__ = ["EngineSpec", "Engine", "EngineSpecError", "ProgressFn", "Capabilities", "effective_capabilities",
           "eos_stop_reason", "check_model_dir", "STOP_TEXT", "STOP_TOKEN_IDS", "STOP_TOKEN_IDS_AND_TEXT", "STOP_NONE"]

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


# how an engine matches stop strings (Capabilities.stop_strings)
STOP_TEXT = "text"  # on the detokenized text, the text cut at the match (vLLM)
STOP_TOKEN_IDS = "token-ids"  # tokenized into stop words, matched on output ids (TensorRT-LLM <= 0.x)
STOP_TOKEN_IDS_AND_TEXT = "token-ids+text"  # both (TensorRT-LLM 1.x: the text path cuts, ids not trimmed)
STOP_NONE = "none"  # stop strings are not applied (a server that accepts and ignores them)


@dataclass(frozen=True)
class Capabilities:
    """What an adapter is and what it can return: everything outside ``engines/`` that needs to
    know about a kind asks this, never the kind name.

    Declared by the adapter (``capabilities(spec)``, no I/O). Where a fact can only be known once
    the engine runs (a server that rejects logprobs, an installed version without per-request
    seeds), the adapter puts the corrected fields in ``EngineInfo.details["capabilities"]`` at
    start; :func:`effective_capabilities` merges the two, and ``source`` says which won.
    """

    transport: str = "in-process"  # or "http": the worker is a client of a server
    limits_source: str = ""  # where EngineInfo.limits come from, for the report's limits table
    packages: tuple = ()  # (label, (distribution names...)) to fingerprint for this kind
    embedded_args: Optional[dict] = None  # args to run the embedded default model; None: cannot
    url_target: bool = False  # an inline target is a URL, not a path
    compiled_engine_dir: bool = False  # a target can be a compiled engine tied to the build machine
    token_ids: bool = True  # returns output token ids
    prompt_token_ids: bool = True  # returns the prompt token ids it used (or their count)
    # most top-k logprobs per output token it returns: 0 none, 1 only the sampled token's
    # logprob (no alternatives: closeness at a fork cannot be checked), >= 2 alternatives
    logprobs_top_k: int = 20
    per_token_timings: bool = True
    production_timings: bool = True  # False: latency is measured on a path production does not use
    seeds_honoured: bool = True  # a per-request seed reproduces a sampled output
    truncate_prompt_tokens_text: bool = True  # truncate_prompt_tokens applied to text prompts
    truncate_prompt_tokens_ids: bool = True  # ... and to token-id prompts
    stop_strings: str = STOP_TEXT  # STOP_TEXT | STOP_TOKEN_IDS | STOP_TOKEN_IDS_AND_TEXT | STOP_NONE
    ignore_eos: bool = True  # ignore_eos is applied (a server may accept and drop it)
    # min_tokens also holds back stop token ids and stop strings (vLLM); False: only EOS is held
    # back, so a stop can end the output before min_tokens (TensorRT-LLM, engines/data facts)
    min_tokens_holds_stops: bool = True
    # prompt + max_tokens over the context length: "clamp" (answer up to the context, finish_reason
    # "length"), "refuse" (an over-length error), "either" (depends on a backend not known here)
    overlength_max_tokens: str = "clamp"
    documented_by: str = ""  # where the engine-specific fields above come from (a facts file)
    tokenize: bool = True  # can tokenize text (its own tokenizer, a route, or the spec's tokenizer)
    source: str = "declared"  # "declared" (by the adapter) or "probed at start: ..." (see above)
    notes: tuple = ()  # human-readable caveats shown in the report

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["packages"] = [list(p) if not isinstance(p, str) else p for p in d["packages"]]
        d["notes"] = list(self.notes)
        return d

    def replace(self, **changes: Any) -> "Capabilities":
        return dataclasses.replace(self, **changes)

    def merged(self, overrides: Optional[dict]) -> "Capabilities":
        """These capabilities with the fields of ``overrides`` (a dict, e.g. what an adapter
        probed at start and put in ``EngineInfo.details["capabilities"]``); unknown keys and the
        static fields (transport, packages, ...) are ignored; notes are appended."""
        if not isinstance(overrides, dict):
            return self
        static = {"transport", "limits_source", "packages", "embedded_args", "url_target", "compiled_engine_dir"}
        names = {f.name for f in dataclasses.fields(self)} - static - {"notes"}
        changes = {k: v for k, v in overrides.items() if k in names}
        notes = tuple(self.notes) + tuple(n for n in overrides.get("notes") or () if n not in self.notes)
        return dataclasses.replace(self, **changes, notes=notes)

    def closeness_top_k(self) -> int:
        """How many alternatives per position logprob closeness can rely on (0: none)."""
        return self.logprobs_top_k if self.logprobs_top_k >= 2 else 0

    def lacks(self) -> list[str]:
        """What this engine does not return, in words ("token ids", "logprobs", ...)."""
        out = []
        if not self.token_ids:
            out.append("token ids")
        if self.logprobs_top_k == 0:
            out.append("logprobs")
        elif self.logprobs_top_k == 1:
            out.append("top-k alternatives (only the sampled token's logprob)")
        if not self.tokenize:
            out.append("tokenization")
        return out


def effective_capabilities(declared: Capabilities, info: Any = None) -> Capabilities:
    """The declared capabilities corrected by what the adapter found at start (``info`` is an
    ``EngineInfo`` or its dict; its ``details["capabilities"]`` holds the corrections)."""
    if info is None:
        return declared
    details = info.get("details") if isinstance(info, dict) else getattr(info, "details", None)
    found = (details or {}).get("capabilities") if isinstance(details, dict) else None
    return declared.merged(found) if isinstance(found, dict) else declared


def eos_stop_reason(stop_reason: Any, request: GenerationRequest, who: str) -> tuple[Any, Optional[str]]:
    """``(stop_reason, warning)``: a stop id the request did not ask for is a model EOS id an engine
    added to its own stop ids (vLLM folds the generation config's extra EOS ids in; TensorRT-LLM on
    main adds them as stop words) and reports as ``stop_reason``: an EOS stop, reported as None like
    every other engine's, with a warning saying so. Anything else is returned as it is."""
    if isinstance(stop_reason, int) and not isinstance(stop_reason, bool) and stop_reason not in request.stop_token_ids:
        return None, (f"{who} reported stop_reason {stop_reason} (a model EOS id, not one the request asked for) "
                      "for an EOS stop; reported as None, like every other engine")
    return stop_reason, None


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
