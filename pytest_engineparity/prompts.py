"""Prompt files: plain prompts or OpenAI request bodies (completions or chat), one per line.

Each line is a JSON object with ``prompt`` (text or token ids) or ``messages``, and optionally the
sampling fields of an OpenAI request (``max_tokens``, ``temperature``, ``top_p``, ``seed``,
``stop``, ``logprobs``/``top_logprobs``) and the vLLM/TensorRT-LLM extras (``top_k``,
``min_tokens``, ``ignore_eos``, ``stop_token_ids``, ``include_stop_str_in_output``,
``truncate_prompt_tokens``). Fields that only route a request (``model``, ``stream``, ``user``,
``n`` = 1 ...) are ignored; fields that would change the output but that the gate cannot apply
identically on both engines are rejected with the line number.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator, Optional

from .types import GenerationRequest

__all__ = ["PromptFileError", "load_prompts", "request_from_body", "sample_requests"]

IGNORED = {"model", "stream", "stream_options", "user", "id", "metadata", "expected", "tags", "category",
           "return_token_ids", "echo"}
MAPPED = {"prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "seed", "stop", "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "min_tokens",
          "logprobs", "top_logprobs", "truncate_prompt_tokens", "n"}


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and line."""


def request_from_body(body: Any, default_max_tokens: int = 64, where: str = "request",
                      greedy_default: bool = True) -> GenerationRequest:
    if not isinstance(body, dict):
        raise PromptFileError(f"{where}: expected a JSON object, got {type(body).__name__}")
    unknown = set(body) - IGNORED - MAPPED
    if unknown:
        raise PromptFileError(f"{where}: unsupported field(s) {sorted(unknown)}")
    if body.get("n", 1) != 1:
        raise PromptFileError(f"{where}: n={body['n']!r}; only n=1 can be compared")
    kw: dict[str, Any] = {}
    if "messages" in body:
        msgs = body["messages"]
        if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs
        ):
            raise PromptFileError(f"{where}: 'messages' must be a non-empty list of {{role, content}} with text content")
        kw["messages"] = tuple({"role": m["role"], "content": m["content"]} for m in msgs)
    elif "prompt" in body:
        p = body["prompt"]
        if isinstance(p, str):
            if not p.strip():
                raise PromptFileError(f"{where}: empty prompt")
            kw["prompt"] = p
        elif isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            kw["prompt_token_ids"] = tuple(p)
        else:
            raise PromptFileError(f"{where}: 'prompt' must be a string or a list of token ids (batched prompts: one per line)")
    else:
        raise PromptFileError(f"{where}: needs 'prompt' or 'messages'")
    if "max_completion_tokens" in body and "max_tokens" not in body:
        body = {**body, "max_tokens": body["max_completion_tokens"]}
    kw["max_tokens"] = body.get("max_tokens", default_max_tokens)
    # a replayed request without temperature would sample on one engine and not the other:
    # default to greedy unless the body says otherwise
    kw["temperature"] = body.get("temperature", 0.0 if greedy_default else 1.0)
    for f in ("top_p", "top_k", "seed", "ignore_eos", "min_tokens", "include_stop_str_in_output",
              "truncate_prompt_tokens"):
        if f in body and body[f] is not None:
            kw[f] = body[f]
    if "stop" in body and body["stop"] is not None:
        stop = body["stop"]
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise PromptFileError(f"{where}: 'stop' must be a string or a list of non-empty strings")
        kw["stop"] = tuple(stop)
    if "stop_token_ids" in body:
        kw["stop_token_ids"] = tuple(body["stop_token_ids"])
    lp = body.get("top_logprobs") if "messages" in body else body.get("logprobs")
    if isinstance(lp, bool):
        lp = 5 if lp else None
    if lp is not None:
        kw["logprobs"] = lp
    if isinstance(body.get("id"), str):
        kw["id"] = body["id"]
    try:
        return GenerationRequest(**kw)
    except (TypeError, ValueError) as exc:
        raise PromptFileError(f"{where}: {exc}") from None


def iter_jsonl(p: Path, error: type = ValueError) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", parsed value) for each JSON line of ``p``; a UTF-8 BOM, CRLF,
    blank lines and ``//`` comment lines are accepted. Bad bytes or JSON raise ``error`` naming
    the file and line."""
    raw = p.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not UTF-8 ({exc})") from None
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("//"):
            continue
        where = f"{p}:{n}"
        try:
            body = json.loads(s)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise error(f"{where}: not valid JSON ({msg})") from None
        yield n, where, body


def load_prompts(path: str | Path, default_max_tokens: int = 64) -> list[GenerationRequest]:
    """Read a JSONL prompt file. Blank lines and lines starting with ``//`` are skipped."""
    p = Path(path)
    if not p.is_file():
        raise PromptFileError(f"prompt file {str(path)!r} does not exist")
    out: list[GenerationRequest] = []
    for n, where, body in iter_jsonl(p, PromptFileError):
        req = request_from_body(body, default_max_tokens, where)
        if req.id is None:
            req = req.replace(id=f"{p.stem}:{n}")
        out.append(req)
    if not out:
        raise PromptFileError(f"{p}: no prompts in the file")
    return out


def sample_requests(requests: list[GenerationRequest], fraction: float, seed: int = 0,
                    where: Optional[str] = None) -> list[GenerationRequest]:
    """A seeded random sample (order kept); at least one request, or an error if there are none."""
    if fraction >= 1.0:
        return list(requests)
    k = round(len(requests) * fraction)
    if k < 1:
        raise PromptFileError(
            f"{where or 'prompts'}: a {fraction:.0%} sample of {len(requests)} requests is empty"
        )
    idx = sorted(random.Random(seed).sample(range(len(requests)), k))
    return [requests[i] for i in idx]
