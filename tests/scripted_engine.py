"""A real ``Engine`` adapter with scripted outputs, for tests that drive the whole session
(register -> one batch per engine in a worker process -> compare -> checks) without a model.

Use it from an engine config table: ``kind = "scripted_engine:ScriptedEngine"`` with
``env = { PYTHONPATH = "<tests dir>" }`` and ``args = { replies = {PROMPT: TEXT}, default = TEXT }``;
``chat_prefix = TEXT`` renders chat requests with that text in front (another chat template: the
prompt token count it reports differs from an engine without it); ``errors = {PROMPT: MESSAGE}``
answers those prompts with an error; ``whole = true`` returns each reply whole (by default a reply
is cut at ``max_tokens`` characters). ``prompt_of(request)`` is the text a reply is keyed on.
Tokens are characters (token id = code point), so the exact-ids layer and re-tokenisation work;
no logprobs are returned (the comparison degrades to text and similarity, as for a text-only server).
"""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

from pytest_engineparity.engines.base import Capabilities, EngineSpec, ProgressFn
from pytest_engineparity.types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings


class ScriptedEngine:
    kind: ClassVar[str] = "scripted"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(limits_source="scripted (args)", logprobs_top_k=0,
                                                        per_token_timings=False)

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.replies: dict[str, str] = dict(spec.args.get("replies", {}))
        self.default: str = str(spec.args.get("default", "ok"))
        self.chat_prefix: str = str(spec.args.get("chat_prefix", ""))
        self.errors: dict[str, str] = dict(spec.args.get("errors", {}))
        self.whole = bool(spec.args.get("whole", False))

    @staticmethod
    def prompt_of(r: GenerationRequest) -> str:
        return r.prompt if r.prompt is not None else " ".join(str(m.get("content", "")) for m in r.messages or [])

    @classmethod
    def capabilities(cls, spec: Optional[EngineSpec]) -> Capabilities:
        return cls.CAPABILITIES

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        return None

    def start(self) -> EngineInfo:
        return EngineInfo(kind="scripted", model="scripted", version="1", limits=EngineLimits(max_model_len=4096))

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        out = []
        for i, r in enumerate(requests):
            prompt = self.prompt_of(r)
            rendered = (self.chat_prefix if r.messages is not None else "") + prompt
            if prompt in self.errors:
                out.append(Completion.failed(self.errors[prompt], "ValueError", prompt_token_count=len(rendered)))
            else:
                text = self.replies.get(prompt, self.default)
                text = text if self.whole else text[: r.max_tokens]
                out.append(Completion(text=text, token_ids=[ord(c) for c in text], finish_reason="length",
                                      prompt_token_count=len(rendered), timings=Timings(source="scripted")))
            if progress:
                progress(i + 1, len(requests), sum(len(c.token_ids) for c in out))
        return out

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def close(self) -> None:
        return None


__all__ = ["ScriptedEngine"]
