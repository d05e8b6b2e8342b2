"""Plain data types shared by the plugin, the workers and every engine adapter.

Nothing here imports pytest or any engine package: these objects cross the process boundary
between pytest and an engine worker as JSON (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

__all__ = [
    "ChatMessage",
    "GenerationRequest",
    "TokenLogprobs",
    "Timings",
    "Completion",
    "EngineLimits",
    "EngineInfo",
]

ChatMessage = dict  # {"role": str, "content": str}

MAX_STOP_STRINGS = 64  # OpenAI allows 4; engines slow down badly on thousands


def _check_text(text: str) -> None:
    """Reject text no engine can take the same way: NUL bytes and lone surrogates."""
    if "\x00" in text:
        raise ValueError(f"text contains a NUL byte at position {text.index(chr(0))}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text contains an invalid surrogate at position {exc.start} (not valid Unicode)") from None

FinishReason = Literal["stop", "length", "abort", "error", "timeout", "cancelled"]


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt plus sampling settings, identical for every engine of a pair.

    Exactly one of ``prompt`` (text), ``messages`` (chat) or ``prompt_token_ids`` is set.
    ``temperature=0.0`` means greedy decoding on every engine.
    """

    prompt: Optional[str] = None
    messages: Optional[tuple] = None  # tuple of {"role", "content"} dicts (hashable via key())
    prompt_token_ids: Optional[tuple] = None
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled
    seed: Optional[int] = None
    stop: tuple = ()
    stop_token_ids: tuple = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    logprobs: Optional[int] = 5  # top-k logprobs per generated token; None = none
    truncate_prompt_tokens: Optional[int] = None
    id: Optional[str] = None  # a readable label (test id, JSONL line); not part of key()

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.prompt, self.messages, self.prompt_token_ids)]
        if sum(given) != 1:
            raise ValueError(
                "GenerationRequest needs exactly one of prompt, messages or prompt_token_ids"
                f" (got {sum(given)})"
            )
        # normalise list inputs so the object stays hashable and comparable
        if self.messages is not None and not isinstance(self.messages, tuple):
            object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        if self.prompt_token_ids is not None and not isinstance(self.prompt_token_ids, tuple):
            object.__setattr__(self, "prompt_token_ids", tuple(int(t) for t in self.prompt_token_ids))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        elif not isinstance(self.stop, tuple):
            object.__setattr__(self, "stop", tuple(self.stop))
        if len(self.stop) > MAX_STOP_STRINGS:
            raise ValueError(f"{len(self.stop)} stop strings; at most {MAX_STOP_STRINGS} are supported")
        if any(not isinstance(x, str) or not x for x in self.stop):
            raise ValueError("stop strings must be non-empty strings")
        for text in self._texts():
            _check_text(text)
        if not isinstance(self.stop_token_ids, tuple):
            object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k!r}")
        if self.min_tokens < 0 or self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens must be in [0, max_tokens], got {self.min_tokens!r}")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ValueError(f"logprobs must be in [0, 20] or None, got {self.logprobs!r}")
        if self.truncate_prompt_tokens is not None and self.truncate_prompt_tokens < 1:
            raise ValueError(
                f"truncate_prompt_tokens must be >= 1, got {self.truncate_prompt_tokens!r}"
            )

    def _texts(self) -> list:
        out = [self.prompt] if self.prompt is not None else []
        if self.messages is not None:
            for m in self.messages:
                if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
                    raise ValueError("each chat message needs a string 'role' and a string 'content'")
                out.append(m["content"])
        return out + list(self.stop)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def kind(self) -> str:
        if self.messages is not None:
            return "chat"
        if self.prompt_token_ids is not None:
            return "tokens"
        return "text"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["messages"] = list(self.messages) if self.messages is not None else None
        d["prompt_token_ids"] = list(self.prompt_token_ids) if self.prompt_token_ids is not None else None
        d["stop"] = list(self.stop)
        d["stop_token_ids"] = list(self.stop_token_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenerationRequest":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown request field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def key(self) -> str:
        """A stable content hash: equal requests share one cached result."""
        d = self.to_dict()
        d.pop("id", None)
        blob = json.dumps(d, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def label(self) -> str:
        if self.id:
            return self.id
        if self.prompt is not None:
            text = self.prompt
        elif self.messages is not None:
            text = str(self.messages[-1].get("content", "")) if self.messages else ""
        else:
            text = f"<{len(self.prompt_token_ids or ())} token ids>"
        text = text.replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    def replace(self, **changes: Any) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)


@dataclass
class TokenLogprobs:
    """Logprob of the sampled token and the engine's top-k alternatives at one position."""

    token_id: int
    logprob: Optional[float]
    top: dict[int, float] = field(default_factory=dict)  # token id -> logprob
    decoded: dict[int, str] = field(default_factory=dict)  # token id -> text, where known

    def to_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "logprob": self.logprob,
                "top": {str(k): v for k, v in self.top.items()},
                "decoded": {str(k): v for k, v in self.decoded.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenLogprobs":
        return cls(int(d["token_id"]), d.get("logprob"),
                   {int(k): float(v) for k, v in (d.get("top") or {}).items()},
                   {int(k): str(v) for k, v in (d.get("decoded") or {}).items()})


@dataclass
class Timings:
    """Latency of one request, in seconds, measured from the moment the engine got the request.

    ``token_times`` are offsets (from the same origin) at which each output token was produced,
    so TTFT = token_times[0], ITL = successive differences, TPOT = mean ITL.
    ``source`` says how they were measured ("engine" timestamps, "client" stream, "step" clock).
    """

    ttft: Optional[float] = None
    e2e: Optional[float] = None
    token_times: Optional[list] = None
    source: str = "unknown"
    engine_ttft: Optional[float] = None  # the engine's own TTFT stat, where it reports one

    @property
    def itl(self) -> list[float]:
        t = self.token_times or []
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def tpot(self) -> Optional[float]:
        gaps = self.itl
        if gaps:
            return sum(gaps) / len(gaps)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"ttft": self.ttft, "e2e": self.e2e, "token_times": self.token_times,
                "source": self.source, "engine_ttft": self.engine_ttft}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Timings":
        return cls(d.get("ttft"), d.get("e2e"), d.get("token_times"), d.get("source", "unknown"),
                   d.get("engine_ttft"))


@dataclass
class Completion:
    """What one engine returned for one request (or the error it rejected it with)."""

    text: str = ""
    token_ids: list = field(default_factory=list)
    token_texts: Optional[list] = None  # each output token decoded alone, where the engine says
    finish_reason: Optional[str] = None
    stop_reason: Any = None  # matched stop string / token id; None for EOS or length
    logprobs: Optional[list] = None  # list[TokenLogprobs], one per output token
    prompt_token_count: Optional[int] = None
    prompt_token_ids: Optional[list] = None  # the prompt token ids the engine used, where it says
    # where token_ids come from: "engine" (the engine's own ids), "recovered" (mapped back from the
    # per-token texts of a stream that carried no ids: the EOS / special tokens with no text are
    # missing and counts around text-level stops differ) or "none" (token_ids left empty)
    token_ids_source: str = "engine"
    completion_token_count: Optional[int] = None  # the engine's own count (e.g. usage.completion_tokens)
    error: Optional[str] = None  # engine's own message when it rejected the request
    error_type: Optional[str] = None  # e.g. "ValueError", "http_400", "timeout"
    timings: Timings = field(default_factory=Timings)
    warnings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "token_texts": list(self.token_texts) if self.token_texts is not None else None,
            "finish_reason": self.finish_reason,
            "stop_reason": self.stop_reason,
            "logprobs": [lp.to_dict() for lp in self.logprobs] if self.logprobs is not None else None,
            "prompt_token_count": self.prompt_token_count,
            "prompt_token_ids": list(self.prompt_token_ids) if self.prompt_token_ids is not None else None,
            "token_ids_source": self.token_ids_source,
            "completion_token_count": self.completion_token_count,
            "error": self.error,
            "error_type": self.error_type,
            "timings": self.timings.to_dict(),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        lps = d.get("logprobs")
        return cls(
            text=d.get("text", ""),
            token_ids=list(d.get("token_ids") or []),
            token_texts=list(d["token_texts"]) if d.get("token_texts") is not None else None,
            finish_reason=d.get("finish_reason"),
            stop_reason=d.get("stop_reason"),
            logprobs=[TokenLogprobs.from_dict(x) for x in lps] if lps is not None else None,
            prompt_token_count=d.get("prompt_token_count"),
            prompt_token_ids=list(d["prompt_token_ids"]) if d.get("prompt_token_ids") is not None else None,
            token_ids_source=d.get("token_ids_source") or "engine",
            completion_token_count=d.get("completion_token_count"),
            error=d.get("error"),
            error_type=d.get("error_type"),
            timings=Timings.from_dict(d.get("timings") or {}),
            warnings=list(d.get("warnings") or []),
        )

    @property
    def output_token_count(self) -> Optional[int]:
        """How many tokens the engine generated: its own ids where it returned them, else its own
        count (usage), else the recovered ids' count where there are any; None when uncountable."""
        if self.token_ids_source == "engine":
            return len(self.token_ids)
        if isinstance(self.completion_token_count, int):
            return self.completion_token_count
        return len(self.token_ids) if self.token_ids else None

    @classmethod
    def failed(cls, message: str, error_type: str, prompt_token_count: Optional[int] = None) -> "Completion":
        return cls(finish_reason="error", error=message, error_type=error_type,
                   prompt_token_count=prompt_token_count)


@dataclass
class EngineLimits:
    """Limits an engine enforces (None = unknown / unlimited)."""

    max_model_len: Optional[int] = None  # prompt + output tokens
    max_input_len: Optional[int] = None
    max_output_len: Optional[int] = None
    max_batch_size: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineLimits":
        return cls(**{k: d.get(k) for k in ("max_model_len", "max_input_len", "max_output_len", "max_batch_size")})


@dataclass
class EngineInfo:
    """What an engine says about itself once started."""

    kind: str
    model: str
    version: Optional[str] = None
    limits: EngineLimits = field(default_factory=EngineLimits)
    details: dict = field(default_factory=dict)  # dtype, device, tokenizer, backend, ...

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "version": self.version,
                "limits": self.limits.to_dict(), "details": dict(self.details)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EngineInfo":
        return cls(d["kind"], d["model"], d.get("version"),
                   EngineLimits.from_dict(d.get("limits") or {}), dict(d.get("details") or {}))
