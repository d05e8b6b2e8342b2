"""Engine adapter for any OpenAI-compatible HTTP server (``vllm serve``, ``trtllm-serve``, ...).

Spec: ``EngineSpec(kind="openai", target="http://host:port[/v1]", api_key_env=..., args={...})``.

``args`` (all optional):

- ``model``: which served model to use (default: the first card of ``GET /v1/models``).
- ``flavor``: ``"vllm"``, ``"trtllm"`` or ``"generic"``; overrides detection (see below).
- ``concurrency``: requests in flight at once (default 64).
- ``request_rate``: Poisson arrivals at this many requests per second (default: all at once);
  ``arrival_seed`` (default 0) makes the arrival times repeatable.
- ``max_retries``: 0..3 (default 3); ``max_retry_wait``: cap in seconds on one wait, including a
  server's ``Retry-After`` (default 10).
- ``logprob_token_ids``: vLLM flavour only; ask for logprob tokens as ``"token_id:N"`` so the
  top-k alternatives are keyed by token id (default true).

Load levels: ``generate_scheduled(requests, offsets, concurrency)`` sends a given schedule (request
``i`` at ``offsets[i]`` seconds, at most ``concurrency`` in flight) instead of the one from the
args; ``OpenAIEngine.load_client(spec, info)`` is a started client of the same server, retries off,
that the load family (``checks/load.py``) drives in the pytest process. The managed server kinds
(``vllm-serve``, ``trtllm-serve``) compose this adapter for all their requests.

What it measures: every request is streamed (``stream: true`` with usage), so time to first
token and every inter-token gap are taken on this side with ``time.perf_counter`` from the
moment the request is sent (``Timings.source == "client-stream"``). A chunk that carries several
token ids gives each of them the chunk's arrival time. Timings of a retried request cover the
attempt that answered.

Server flavours (``EngineInfo.details["flavor"]``):

- ``vllm``: the model card says ``owned_by == "vllm"``. Extra fields are accepted, so the adapter
  asks for ``return_token_ids`` and exact token ids come back. ``max_model_len`` is read from the
  card whatever the flavour.
- ``trtllm``: ``owned_by`` mentions TensorRT, or ``GET /version`` answers on a server that is not
  vLLM. Its request models forbid unknown fields, so only fields it accepts are ever sent.
- ``generic``: anything else; only OpenAI fields plus the extras a request really needs.

Capabilities, probed at start: besides the model list and ``/version``, ``start()`` sends a few
one-token requests to learn what the server accepts and returns (``EngineInfo.details
["capabilities"]``, merged over the declared ones): whether it takes ``stream_options``, whether
it returns token ids (vLLM: ``return_token_ids``; a strict server refuses the field), how many
top logprobs it returns (``logprobs=20``, then ``1``: trtllm-serve on a compiled engine without
``gather_generation_logits`` refuses ``logprobs > 1``, older versions refuse any), and whether
``POST /tokenize`` exists. Requests then ask only for what the server can give: no
``logprobs``/``top_logprobs`` to a server that refuses them, no vLLM-only field to a strict one.
A server that fails the probes is still used; its capabilities stay the declared ones and
``details["probe_errors"]`` says why.

Token ids and logprobs: when the server sends no ``token_ids``, ``Completion.token_ids`` stays
empty and a warning says so (timings then count streamed chunks / logprob entries), unless every
output token came with a logprob entry whose text maps to exactly one token id of the spec's
tokenizer and those texts spell the output: then the ids are recovered from them (a warning
says so). OpenAI
logprob shapes key the top-k alternatives by *text*. With vLLM the adapter sends
``return_tokens_as_token_ids`` and keys ``TokenLogprobs.top`` by the exact ids (``decoded`` then
stays empty: the server does not send the texts). Elsewhere the sampled token's id comes from
the chunk's ``token_ids``, and an alternative's id is recovered only when the spec names a
``tokenizer`` in which exactly one token decodes to that text; the texts go into ``decoded``.
Alternatives whose id cannot be known are left out of ``top`` and counted in a warning: they are
never keyed by a made-up id.

Errors: an HTTP error answer fails that request only, as ``Completion.failed(<server's message>,
"http_<status>")``, reading vLLM's nested ``{"error": {...}}``, trtllm-serve's flat
``{"object": "error", "message": ...}`` and FastAPI's ``{"detail": ...}``/``{"error": "..."}``.
429 and 503 answers and connection failures are retried (bounded, honouring ``Retry-After``)
only before any byte of the stream arrived; each retry is noted in ``Completion.warnings``.
Timeouts (``spec.request_timeout`` of silence) fail with ``"timeout"``; a broken, malformed or
unterminated stream fails with a message that says which. The API key (from the environment
variable named by ``spec.api_key_env``) is sent as ``Authorization: Bearer`` and is scrubbed from
every message this adapter produces.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, ClassVar, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..types import Completion, EngineInfo, EngineLimits, GenerationRequest, Timings, TokenLogprobs
from .base import Capabilities, EngineSpec, EngineSpecError, ProgressFn, eos_stop_reason

__all__ = ["OpenAIEngine", "OpenAIServerError", "FLAVORS", "normalise_base_url"]

FLAVORS = ("vllm", "trtllm", "generic")
DEFAULT_CONCURRENCY = 64
MAX_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT = 10.0
RETRY_STATUSES = frozenset({429, 503})
START_TIMEOUT_CAP = 30.0  # seconds for each GET during start()
CONNECT_TIMEOUT_CAP = 10.0
ERROR_SNIPPET = 2000  # characters of an error body kept in a message
TOKEN_ID_PREFIX = "token_id:"
PROBE_PROMPT = "Hello"  # the one-token probe requests of start()
PROBE_LOGPROBS = 20  # the most top logprobs a GenerationRequest asks for
KNOWN_ARGS = {
    "model": "served model id (default: the first card of GET /v1/models)",
    "flavor": "vllm | trtllm | generic (default: detected)",
    "concurrency": "requests in flight at once (default 64)",
    "request_rate": "Poisson arrivals, requests per second (default: all at once)",
    "arrival_seed": "seed of the Poisson arrival times (default 0)",
    "max_retries": "retries for 429/503/connection errors, 0..3 (default 3)",
    "max_retry_wait": "cap in seconds on one retry wait (default 10)",
    "logprob_token_ids": "vLLM: key top logprobs by token id (default true)",
}


class OpenAIServerError(RuntimeError):
    """The server cannot be used (unreachable, refuses the key, lists no model, ...)."""


def normalise_base_url(target: Optional[str]) -> tuple[str, str]:
    """``(root, api)`` for a base URL given with or without ``/v1``.

    ``"http://h:8000"``, ``"http://h:8000/"`` and ``"http://h:8000/v1/"`` all give
    ``("http://h:8000", "http://h:8000/v1")``; a path prefix (``http://h/proxy/v1``) is kept.
    Raises ``EngineSpecError`` for anything that is not an http(s) URL with a host.
    """
    if not target or not isinstance(target, str):
        raise EngineSpecError("an openai engine needs target = the server's base URL, e.g. http://127.0.0.1:8000/v1")
    text = target.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise EngineSpecError(
            f"openai engine target {target!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000/v1"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise EngineSpecError(f"openai engine target {target!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise EngineSpecError(f"openai engine target {target!r} must not carry a query or fragment")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    root = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return root, root + "/v1"


@dataclass(frozen=True)
class _Options:
    """``spec.args`` parsed once, with errors that name the engine and the argument."""

    model: Optional[str] = None
    flavor: Optional[str] = None
    concurrency: int = DEFAULT_CONCURRENCY
    request_rate: Optional[float] = None
    arrival_seed: int = 0
    max_retries: int = MAX_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    logprob_token_ids: bool = True

    @classmethod
    def from_spec(cls, spec: EngineSpec) -> "_Options":
        args = dict(spec.args or {})
        label = spec.label
        unknown = sorted(set(args) - set(KNOWN_ARGS))
        if unknown:
            known = "; ".join(f"{k}: {v}" for k, v in KNOWN_ARGS.items())
            raise EngineSpecError(f"engine {label!r}: unknown openai arg(s) {', '.join(unknown)} (known: {known})")

        def bad(name: str, why: str) -> EngineSpecError:
            return EngineSpecError(f"engine {label!r}: args.{name} = {args[name]!r}: {why}")

        model = args.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            raise bad("model", "must be a non-empty string")
        flavor = args.get("flavor")
        if flavor is not None and flavor not in FLAVORS:
            raise bad("flavor", f"must be one of {', '.join(FLAVORS)}")
        concurrency = args.get("concurrency", DEFAULT_CONCURRENCY)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise bad("concurrency", "must be an integer >= 1")
        rate = args.get("request_rate")
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
                raise bad("request_rate", "must be a number > 0 (requests per second) or unset")
            rate = None if math.isinf(rate) else float(rate)
        seed = args.get("arrival_seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise bad("arrival_seed", "must be an integer")
        retries = args.get("max_retries", MAX_RETRIES)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
            raise bad("max_retries", f"must be an integer in [0, {MAX_RETRIES}]")
        wait = args.get("max_retry_wait", DEFAULT_MAX_RETRY_WAIT)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait < math.inf:
            raise bad("max_retry_wait", "must be a finite number of seconds >= 0")
        ids = args.get("logprob_token_ids", True)
        if not isinstance(ids, bool):
            raise bad("logprob_token_ids", "must be true or false")
        return cls(model, flavor, concurrency, rate, seed, retries, float(wait), ids)


class _StreamFailure(Exception):
    """A stream that cannot be trusted; ``error_type`` goes into the Completion."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


@dataclass
class _LogprobEntry:
    """One output position as the server described it (before ids are resolved)."""

    token: str
    logprob: Optional[float]
    alternatives: list  # [(text, logprob)]
    chunk_token_id: Optional[int]  # the id at this position from the chunk's token_ids


@dataclass
class _StreamResult:
    text_parts: list = field(default_factory=list)
    token_ids: list = field(default_factory=list)
    token_times: list = field(default_factory=list)
    entries: list = field(default_factory=list)  # list[_LogprobEntry]
    saw_token_ids: bool = False
    finish_reason: Optional[str] = None
    stop_reason: Any = None
    prompt_token_ids: Optional[list] = None
    usage: Optional[dict] = None
    events: int = 0


def _placeholder_id(token: Any) -> Optional[int]:
    """The id in vLLM's ``"token_id:123"`` form (``return_tokens_as_token_ids``), else None."""
    if isinstance(token, str) and token.startswith(TOKEN_ID_PREFIX):
        rest = token[len(TOKEN_ID_PREFIX):]
        if rest.isdigit():
            return int(rest)
    return None


def _error_message(body: bytes, status: int) -> str:
    """The server's own words from an error body, whatever its shape."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):  # vLLM / OpenAI: {"error": {"message", "type", "code"}}
            message = err.get("message") or err.get("type")
        elif isinstance(err, str):  # trtllm-serve validation handler: {"error": "..."}
            message = err
        elif isinstance(data.get("message"), str):  # trtllm-serve: {"object": "error", "message"}
            message = data["message"]
        elif "detail" in data:  # FastAPI default
            detail = data["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
    if not message:
        message = text or f"HTTP {status} with an empty body"
    message = str(message)
    return message if len(message) <= ERROR_SNIPPET else message[:ERROR_SNIPPET] + "..."


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _trtllm_serve_traits(version: Optional[str], notes: list[str]) -> dict[str, Any]:
    """What trtllm-serve of ``version`` does with fields it accepts (engines/data/trtllm-*.json):
    0.17 accepts ``ignore_eos`` and ``truncate_prompt_tokens`` but never forwards them; later
    versions forward them, and the LLM API truncates text prompts only; the PyTorch sampler of
    1.0-1.2 ignores per-request seeds. Stop strings: matched on token ids and, from 1.0, in the
    text too."""
    from .base import STOP_TOKEN_IDS, STOP_TOKEN_IDS_AND_TEXT
    from .trtllm import version_series

    series = version_series(version)
    # min_tokens bans only the end id; prompt + max_tokens over max_seq_len is refused by a compiled
    # engine (the backend behind a server is not visible here: "either")
    out: dict[str, Any] = {"truncate_prompt_tokens_ids": False, "min_tokens_holds_stops": False,
                           "overlength_max_tokens": "either",
                           "documented_by": f"trtllm-serve {version or '(version unknown)'}: TensorRT-LLM's source, "
                                            f"engines/data/trtllm-{series or 'main'}.json"}
    if series == "0.17":
        out.update(ignore_eos=False, truncate_prompt_tokens_text=False, stop_strings=STOP_TOKEN_IDS)
        notes.append(f"trtllm-serve {version}: ignore_eos and truncate_prompt_tokens are accepted and ignored")
    else:
        out.update(stop_strings=STOP_TOKEN_IDS_AND_TEXT)
        notes.append(f"trtllm-serve {version or '(version unknown)'}: truncate_prompt_tokens applies to text"
                     " prompts only (token-id prompts are used as given)")
    if series in ("1.0", "1.2"):
        out["seeds_honoured"] = False
        notes.append(f"trtllm-serve {version}: the PyTorch backend ignores per-request seeds"
                     " (a compiled engine honours them)")
    return out


def _retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, float]]:
    """Yield ``(data, arrival_time)`` per server-sent event; raise on a line that is not SSE.

    Comments (``:...``) and ``event``/``id``/``retry`` fields are skipped; several ``data``
    lines of one event are joined with newlines, as the SSE spec says. The arrival time is
    ``time.perf_counter()`` when the event's last data line was read.
    """
    data: list[str] = []
    arrived = 0.0
    async for line in lines:
        now = time.perf_counter()
        if line == "":
            if data:
                yield "\n".join(data), arrived
                data = []
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if not sep or name not in ("data", "event", "id", "retry"):
            shown = line if len(line) <= 200 else line[:200] + "..."
            raise _StreamFailure(f"malformed server-sent-event line {shown!r}", "malformed_stream")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
            arrived = now
    if data:
        yield "\n".join(data), arrived


class OpenAIEngine:
    """The Engine protocol against an OpenAI-compatible server (see the module docstring)."""

    kind: ClassVar[str] = "openai"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="http",
        limits_source="GET /v1/models (max_model_len of the model card)",
        url_target=True,
        notes=("timings are the client's clock on the stream (TTFT, every inter-token gap)",
               "the server's own memory is not visible from the client"),
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        """Declared without contacting the server: what a vLLM server gives when ``args.flavor``
        says vLLM, else only text (start() probes the server and corrects this)."""
        args = (spec.args or {}) if spec is not None else {}
        tokenizer = bool(spec is not None and spec.tokenizer)
        if args.get("flavor") == "vllm":
            return cls.CAPABILITIES
        return cls.CAPABILITIES.replace(
            token_ids=False, logprobs_top_k=0, tokenize=tokenizer,
            notes=cls.CAPABILITIES.notes + ("token ids, logprobs and /tokenize are probed at start",))

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.options = _Options.from_spec(spec)
        self.root, self.api = normalise_base_url(spec.target)
        self.model: Optional[str] = None
        self.flavor: Optional[str] = None
        self.info: Optional[EngineInfo] = None
        self._api_key: Optional[str] = None
        self._client: Optional[httpx.Client] = None
        self._tokenize_route: Optional[bool] = None  # None = not tried yet
        self._tokenizer: Any = None
        self._text_ids: Optional[dict[str, Optional[int]]] = None  # token text -> unique id
        self._text_ids_note: Optional[str] = None
        # what the server takes, from the probes of start() (see the module docstring)
        self._stream_usage = True  # send stream_options.include_usage
        self._ask_token_ids = False  # send return_token_ids
        self._logprobs_k = PROBE_LOGPROBS  # most top logprobs to ask for (0: do not ask)
        self._no_route = ""  # why tokenize() cannot use the server (from the probe)

    # -- spec checks ---------------------------------------------------------------------------
    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        """URL shape, args and the API key variable; never contacts the server."""
        normalise_base_url(spec.target)
        _Options.from_spec(spec)
        if spec.api_key_env is not None:
            name = spec.api_key_env
            if not isinstance(name, str) or not name:
                raise EngineSpecError(f"engine {spec.label!r}: api_key_env must name an environment variable")
            if not (os.environ.get(name) or spec.env.get(name)):
                raise EngineSpecError(
                    f"engine {spec.label!r}: api_key_env names the environment variable {name!r},"
                    " which is not set (or empty)"
                )
        if not spec.request_timeout or spec.request_timeout <= 0:
            raise EngineSpecError(f"engine {spec.label!r}: request_timeout must be > 0 seconds")

    # -- helpers -------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        key = self._api_key
        if key and key in text:
            text = text.replace(key, "***")
        return text

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _read_api_key(self) -> Optional[str]:
        name = self.spec.api_key_env
        if not name:
            return None
        value = os.environ.get(name) or self.spec.env.get(name)
        if not value:
            raise EngineSpecError(
                f"engine {self.spec.label!r}: the environment variable {name!r} (api_key_env) is not set"
            )
        return str(value)

    def _get_json(self, client: httpx.Client, url: str, required: bool) -> Optional[Any]:
        """GET a JSON document; errors are OpenAIServerError when ``required``, else None."""
        try:
            resp = client.get(url)
        except httpx.ConnectError as exc:
            if not required:
                return None
            raise OpenAIServerError(
                f"cannot connect to {url}: {self._redact(str(exc)) or 'connection refused'}"
                " (is the server running and listening there?)"
            ) from None
        except httpx.TimeoutException:
            if not required:
                return None
            raise OpenAIServerError(
                f"no answer from {url} within {client.timeout.read or 0:g} s (server busy or still loading?)"
            ) from None
        except httpx.HTTPError as exc:
            if not required:
                return None
            raise OpenAIServerError(f"GET {url} failed: {self._redact(str(exc))}") from None
        if resp.status_code >= 400:
            if not required:
                return None
            hint = ""
            if resp.status_code in (401, 403):
                hint = (f" (check the key in ${self.spec.api_key_env})" if self.spec.api_key_env
                        else " (the server wants an API key: set api_key_env in the engine spec)")
            raise OpenAIServerError(
                f"GET {url} answered HTTP {resp.status_code}: "
                f"{self._redact(_error_message(resp.content, resp.status_code))}{hint}"
            )
        try:
            return resp.json()
        except ValueError:
            if not required:
                return None
            raise OpenAIServerError(f"GET {url} answered HTTP {resp.status_code} with a body that is not JSON") from None

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> EngineInfo:
        """List the server's models, pick one, read its limits, detect the server flavour."""
        self._api_key = self._read_api_key()
        rt = float(self.spec.request_timeout)
        self._client = httpx.Client(
            timeout=httpx.Timeout(min(rt, START_TIMEOUT_CAP), connect=min(rt, CONNECT_TIMEOUT_CAP)),
            headers=self._headers(),
        )
        models = self._get_json(self._client, self.api + "/models", required=True)
        cards = models.get("data") if isinstance(models, dict) else None
        if not isinstance(cards, list) or not all(isinstance(c, dict) and c.get("id") for c in cards):
            raise OpenAIServerError(
                f"GET {self.api}/models did not answer an OpenAI model list: {self._redact(str(models)[:300])}"
            )
        if not cards:
            raise OpenAIServerError(f"GET {self.api}/models lists no model: the server serves nothing")
        ids = [str(c["id"]) for c in cards]
        if self.options.model is not None:
            if self.options.model not in ids:
                raise OpenAIServerError(
                    f"model {self.options.model!r} is not served at {self.api}; it serves: {', '.join(ids)}"
                )
            card = cards[ids.index(self.options.model)]
        else:
            card = cards[0]
        self.model = str(card["id"])
        owned_by = str(card.get("owned_by") or "")
        max_len = card.get("max_model_len")
        max_model_len = max_len if isinstance(max_len, int) and not isinstance(max_len, bool) else None

        version_doc = self._get_json(self._client, self.root + "/version", required=False)
        version = None
        if isinstance(version_doc, dict) and version_doc.get("version") is not None:
            version = str(version_doc["version"])

        if self.options.flavor is not None:
            flavor, source = self.options.flavor, "args.flavor"
        elif owned_by.lower() == "vllm":
            flavor, source = "vllm", f"model card owned_by={owned_by!r}"
        elif "tensorrt" in owned_by.lower() or "trtllm" in owned_by.lower():
            flavor, source = "trtllm", f"model card owned_by={owned_by!r}"
        elif version is not None:
            flavor, source = "trtllm", "GET /version answered on a server that is not vLLM"
        else:
            flavor, source = "generic", "no vLLM or TensorRT-LLM markers"
        self.flavor = flavor
        probed, probe_log, probe_errors = self._probe(version)

        self.info = EngineInfo(
            kind=self.kind,
            model=self.model,
            version=version,
            limits=EngineLimits(max_model_len=max_model_len),
            details={
                "base_url": self.root,
                "api_url": self.api,
                "flavor": flavor,
                "flavor_source": source,
                "owned_by": owned_by or None,
                "served_models": ids,
                "timing_source": "client-stream",
                "concurrency": self.options.concurrency,
                "request_rate": self.options.request_rate,
                "arrival": "poisson" if self.options.request_rate else "all-at-once",
                "arrival_seed": self.options.arrival_seed,
                "max_retries": self.options.max_retries,
                "max_retry_wait": self.options.max_retry_wait,
                "token_ids": "requested (return_token_ids)" if self._ask_token_ids else "only if the server sends them",
                "logprob_token_ids": bool(flavor == "vllm" and self.options.logprob_token_ids),
                "api_key_env": self.spec.api_key_env,
                "request_timeout": rt,
                "capabilities": probed,
                "probes": probe_log,
                **({"probe_errors": probe_errors} if probe_errors else {}),
            },
        )
        return self.info

    # -- probes --------------------------------------------------------------------------------
    def _probe_post(self, extra: dict[str, Any], path: str = "/completions") -> tuple[int, list, str]:
        """One streamed one-token request: ``(status, parsed chunks, error message)``."""
        assert self._client is not None
        body: dict[str, Any] = {"model": self.model, "prompt": PROBE_PROMPT, "max_tokens": 1,
                                "temperature": 0.0, "stream": True}
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        try:
            resp = self._client.post(self.api + path, json=body)
        except httpx.HTTPError as exc:
            return 0, [], self._redact(str(exc)) or type(exc).__name__
        if resp.status_code >= 400:
            return resp.status_code, [], self._redact(_error_message(resp.content, resp.status_code))
        chunks = []
        for line in resp.text.splitlines():
            if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                try:
                    chunks.append(json.loads(line[5:]))
                except ValueError:
                    return resp.status_code, [], f"malformed stream line {line[:200]!r}"
        return resp.status_code, chunks, ""

    @staticmethod
    def _choices(chunks: list) -> list[dict]:
        return [c for ch in chunks if isinstance(ch, dict) for c in (ch.get("choices") or []) if isinstance(c, dict)]

    def _probe(self, version: Optional[str]) -> tuple[dict[str, Any], list[str], list[str]]:
        """Learn what the server takes and returns with one-token requests (module docstring).
        Returns ``(capability fields, what was tried, errors)``; sets the request switches."""
        log: list[str] = []
        errors: list[str] = []
        found: dict[str, Any] = {}
        notes: list[str] = []
        status, chunks, err = self._probe_post({})
        if status >= 400 and "stream_options" in err:
            self._stream_usage = False
            log.append(f"stream_options refused (HTTP {status}): usage not asked for")
            notes.append("the server refuses stream_options: prompt token counts come from nowhere")
            status, chunks, err = self._probe_post({})
        if status != 200:
            errors.append(f"a one-token completion failed (HTTP {status}): {err}")
            self._logprobs_k = 0
            return {"source": "probed at start: the probe failed; capabilities as declared"}, log, errors
        found["prompt_token_ids"] = any(isinstance(ch.get("usage"), dict) and "prompt_tokens" in ch["usage"]
                                        for ch in chunks if isinstance(ch, dict))
        # token ids: vLLM returns them when asked; a strict server (trtllm-serve) refuses the field
        saw_ids = any(isinstance(c.get("token_ids"), list) for c in self._choices(chunks))
        if not saw_ids and self.flavor != "trtllm":
            status, chunks_ids, err = self._probe_post({"return_token_ids": True})
            if status == 200 and any(isinstance(c.get("token_ids"), list) for c in self._choices(chunks_ids)):
                self._ask_token_ids = saw_ids = True
                log.append("return_token_ids accepted: token ids returned")
            else:
                log.append(f"return_token_ids: {'refused (HTTP %d): %s' % (status, err[:160]) if status != 200 else 'accepted, no ids returned'}")
        elif self.flavor == "trtllm":
            log.append("return_token_ids not sent (trtllm-serve's request models forbid unknown fields)")
        found["token_ids"] = saw_ids
        # logprobs: as many as a request may ask for, then only the sampled token's
        self._logprobs_k = 0
        for k in (PROBE_LOGPROBS, 1):
            extra: dict[str, Any] = {"logprobs": k}
            if self.flavor == "vllm" and self.options.logprob_token_ids:
                extra["return_tokens_as_token_ids"] = True
            status, chunks_lp, err = self._probe_post(extra)
            if status != 200:
                log.append(f"logprobs={k} refused (HTTP {status}): {err[:200]}")
                continue
            got = 0
            for c in self._choices(chunks_lp):
                lp = c.get("logprobs")
                if isinstance(lp, dict) and lp.get("token_logprobs"):
                    tops = lp.get("top_logprobs") or []
                    got = max(got, 1, *(len(t) for t in tops if isinstance(t, dict)))
            self._logprobs_k = min(got, k)
            log.append(f"logprobs={k} accepted: {got} per token returned")
            break
        found["logprobs_top_k"] = self._logprobs_k
        # tokenization: a /tokenize route (vLLM), else the spec's tokenizer
        route = False
        try:
            assert self._client is not None
            resp = self._client.post(self.root + "/tokenize", json={"model": self.model, "prompt": PROBE_PROMPT})
            route = resp.status_code == 200 and isinstance(_json_or_none(resp), dict)
            self._tokenize_route = True if route else (False if resp.status_code in (404, 405) else None)
            if self._tokenize_route is False:
                self._no_route = f"the server has no {self.root}/tokenize route (HTTP {resp.status_code})"
        except httpx.HTTPError:
            self._tokenize_route = None
        log.append(f"POST /tokenize: {'answered' if route else 'no such route'}")
        found["tokenize"] = route or bool(self.spec.tokenizer)
        if not found["tokenize"]:
            notes.append("no /tokenize route and no tokenizer in the engine spec: set tokenizer to tokenize")
        if self.flavor == "trtllm":
            found.update(_trtllm_serve_traits(version, notes))
        if not found["token_ids"]:
            notes.append("text only: no token ids; divergences are found on re-tokenized text")
        if self._logprobs_k == 0:
            notes.append("no logprobs: logprob closeness cannot be checked")
        elif self._logprobs_k == 1:
            notes.append("only the sampled token's logprob: closeness at a fork cannot be checked")
        found["source"] = "probed at start (one-token requests)"
        found["notes"] = notes
        return found, log, errors

    # -- request bodies ------------------------------------------------------------------------
    def build_request(self, req: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """``(url, json body)`` for one request; public so tests can pin what is sent."""
        if self.model is None or self.flavor is None:
            raise RuntimeError("OpenAIEngine.start() must run before requests are built")
        body: dict[str, Any] = {"model": self.model}
        chat = req.messages is not None
        if chat:
            url = self.api + "/chat/completions"
            body["messages"] = [dict(m) for m in req.messages or ()]
        else:
            url = self.api + "/completions"
            body["prompt"] = req.prompt if req.prompt is not None else list(req.prompt_token_ids or ())
        body.update({
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
            "stop": list(req.stop) if req.stop else None,
            "stream": True,
        })
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        if req.top_k > 0:
            body["top_k"] = req.top_k
        if req.ignore_eos:
            body["ignore_eos"] = True
        if req.min_tokens:
            body["min_tokens"] = req.min_tokens
        if req.stop_token_ids:
            body["stop_token_ids"] = list(req.stop_token_ids)
        if req.include_stop_str_in_output:
            body["include_stop_str_in_output"] = True
        if req.truncate_prompt_tokens is not None:
            body["truncate_prompt_tokens"] = req.truncate_prompt_tokens
        k = self._logprobs_asked(req)
        if k is not None:
            if chat:
                body["logprobs"] = True
                if self._logprobs_k >= 2:  # top_logprobs > 0 needs alternatives (trtllm-serve refuses it otherwise)
                    body["top_logprobs"] = k
            else:
                body["logprobs"] = k
        if self._ask_token_ids:
            body["return_token_ids"] = True
        if self.flavor == "vllm" and k is not None and self.options.logprob_token_ids:
            body["return_tokens_as_token_ids"] = True
        return url, body

    def _logprobs_asked(self, req: GenerationRequest) -> Optional[int]:
        """How many top logprobs to ask for: what the request wants, capped at what the server
        returns; None when it wants none or the server gives none."""
        if req.logprobs is None or self._logprobs_k == 0:
            return None
        return min(req.logprobs, self._logprobs_k)

    # -- generate ------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        """Stream every request (bounded concurrency, optional Poisson arrivals); one Completion each."""
        if self.model is None:
            raise RuntimeError("OpenAIEngine.start() must run before generate()")
        reqs = list(requests)
        if not reqs:
            return []
        if any(self._logprobs_asked(r) is not None for r in reqs) and not (
            self.flavor == "vllm" and self.options.logprob_token_ids
        ):
            self._ensure_text_index()  # before the clock starts: loading a tokenizer is slow
        return self._run_async(self._generate_all(reqs, progress))

    def generate_scheduled(self, requests: Sequence[GenerationRequest], offsets: Sequence[float],
                           concurrency: int, progress: Optional[ProgressFn] = None) -> list[Completion]:
        """Stream ``requests`` on a given schedule: request ``i`` is sent ``offsets[i]`` seconds
        after the start (or later, when ``concurrency`` requests are already in flight). The
        load family drives its seeded load levels through this (the same schedule for both
        engines); ``generate`` is this with the schedule from the adapter's own args."""
        if self.model is None:
            raise RuntimeError("OpenAIEngine.start() must run before generate_scheduled()")
        reqs, offs = list(requests), [float(x) for x in offsets]
        if len(offs) != len(reqs):
            raise ValueError(f"{len(offs)} arrival offsets for {len(reqs)} requests")
        if any(not (x >= 0 and math.isfinite(x)) for x in offs):
            raise ValueError("arrival offsets must be finite and >= 0")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not reqs:
            return []
        return self._run_async(self._generate_all(reqs, progress, offs, concurrency))

    @classmethod
    def load_client(cls, spec: EngineSpec, info: Any) -> "OpenAIEngine":
        """A started client of the same server in the calling process, for ``generate_scheduled``
        (retries off: under load a 429/503 is a result, not a hiccup to hide)."""
        args = {k: v for k, v in (spec.args or {}).items() if k in ("model", "flavor", "logprob_token_ids")}
        client = cls(EngineSpec(**{**spec.to_dict(), "args": {**args, "max_retries": 0}}))
        client.start()
        return client

    def _run_async(self, coro: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # called from inside an event loop (in-process use): run ours on a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    def _arrival_offsets(self, n: int) -> list[float]:
        rate = self.options.request_rate
        if not rate:
            return [0.0] * n
        rng = random.Random(self.options.arrival_seed)
        offsets, t = [], 0.0
        for i in range(n):
            if i:
                t += rng.expovariate(rate)
            offsets.append(t)
        return offsets

    async def _generate_all(self, reqs: list[GenerationRequest], progress: Optional[ProgressFn],
                            offsets: Optional[list[float]] = None, concurrency: Optional[int] = None) -> list[Completion]:
        n = len(reqs)
        conc = self.options.concurrency if concurrency is None else concurrency
        rt = float(self.spec.request_timeout)
        sem = asyncio.Semaphore(conc)
        offsets = self._arrival_offsets(n) if offsets is None else offsets
        results: list[Optional[Completion]] = [None] * n
        counters = {"done": 0, "tokens": 0}
        timeout = httpx.Timeout(rt, connect=min(rt, CONNECT_TIMEOUT_CAP))
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers()) as client:
            t0 = time.perf_counter()

            async def one(i: int, req: GenerationRequest) -> None:
                delay = t0 + offsets[i] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with sem:
                    completion = await self._run_one(client, req)
                results[i] = completion
                counters["done"] += 1
                counters["tokens"] += len(completion.token_ids) or len(completion.timings.token_times or ())
                if progress is not None:
                    progress(counters["done"], n, counters["tokens"])

            await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))
        missing = [i for i, c in enumerate(results) if c is None]
        if missing:  # gather() raised otherwise; this guards the invariant the worker relies on
            raise RuntimeError(f"no completion for request(s) {missing}")
        return [c for c in results if c is not None]

    def _failed(self, message: str, error_type: str, req: GenerationRequest, warnings: list[str]) -> Completion:
        count = len(req.prompt_token_ids) if req.prompt_token_ids is not None else None
        c = Completion.failed(self._redact(message), error_type, prompt_token_count=count)
        c.warnings = [self._redact(w) for w in warnings]
        return c

    def _retry_wait(self, attempt: int, retry_after: Optional[str]) -> float:
        cap = self.options.max_retry_wait
        asked = _retry_after_seconds(retry_after)
        if asked is not None:
            return min(asked, cap)
        return min(0.5 * 2 ** (attempt - 1), cap)

    async def _run_one(self, client: httpx.AsyncClient, req: GenerationRequest) -> Completion:
        """One request, with bounded retries before the stream starts."""
        url, body = self.build_request(req)
        warnings: list[str] = []
        max_retries = self.options.max_retries
        attempt = 0
        while True:
            attempt += 1
            try:
                t_send = time.perf_counter()
                async with client.stream("POST", url, json=body) as resp:
                    status = resp.status_code
                    if status >= 400:
                        message = _error_message(await resp.aread(), status)
                        if status in RETRY_STATUSES and attempt <= max_retries:
                            wait = self._retry_wait(attempt, resp.headers.get("retry-after"))
                            warnings.append(
                                f"retry {attempt}/{max_retries}: HTTP {status} from {url} ({message});"
                                f" waited {wait:.2f} s" + (" as Retry-After asked" if resp.headers.get("retry-after") else "")
                            )
                            await asyncio.sleep(wait)
                            continue
                        return self._failed(message, f"http_{status}", req, warnings)
                    ctype = resp.headers.get("content-type", "")
                    if "text/event-stream" not in ctype:
                        snippet = (await resp.aread())[:300].decode("utf-8", "replace")
                        return self._failed(
                            f"{url} answered HTTP {status} with content-type {ctype!r} instead of a"
                            f" server-sent-event stream (stream=true ignored?): {snippet!r}",
                            "malformed_stream", req, warnings,
                        )
                    completion = await self._read_stream(resp, req, url, t_send)
            except httpx.TimeoutException as exc:
                return self._failed(
                    f"no answer from {url} within {self.spec.request_timeout:g} s ({type(exc).__name__})",
                    "timeout", req, warnings,
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # only reached before the stream started: _read_stream handles its own errors
                reason = str(exc) or type(exc).__name__
                if attempt <= max_retries:
                    wait = self._retry_wait(attempt, None)
                    warnings.append(f"retry {attempt}/{max_retries}: cannot connect to {url} ({reason}); waited {wait:.2f} s")
                    await asyncio.sleep(wait)
                    continue
                return self._failed(
                    f"cannot connect to {url}: {reason} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})",
                    "connection_error", req, warnings,
                )
            completion.warnings[:0] = [self._redact(w) for w in warnings]
            if warnings and completion.ok:
                completion.warnings.append(f"timings cover attempt {attempt} only (after {attempt - 1} retries)")
            return completion

    async def _read_stream(self, resp: httpx.Response, req: GenerationRequest, url: str, t_send: float) -> Completion:
        """Read one SSE stream to ``[DONE]``; any surprise fails the request with a clear message."""
        chat = req.messages is not None
        st = _StreamResult()
        done = False
        try:
            async for data, arrived in _sse_events(resp.aiter_lines()):
                st.events += 1
                if data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    shown = data if len(data) <= 200 else data[:200] + "..."
                    raise _StreamFailure(
                        f"malformed server-sent event #{st.events} from {url}: {shown!r} is not JSON ({exc})",
                        "malformed_stream",
                    ) from None
                self._take_chunk(chunk, st, chat, arrived - t_send, url)
            t_end = time.perf_counter() - t_send
        except _StreamFailure as exc:
            where = "" if url in exc.message else f" (from {url})"
            return self._failed(f"{exc.message}{where} after {len(st.token_times)} tokens", exc.error_type, req, [])
        except httpx.TimeoutException:
            return self._failed(
                f"stream from {url} went silent for {self.spec.request_timeout:g} s after"
                f" {len(st.token_times)} tokens", "timeout", req, [],
            )
        except httpx.HTTPError as exc:
            return self._failed(
                f"stream from {url} broke after {len(st.token_times)} tokens: {exc or type(exc).__name__}",
                "connection_error", req, [],
            )
        if not done:
            return self._failed(
                f"stream from {url} ended without 'data: [DONE]' after {st.events} events and"
                f" {len(st.token_times)} tokens: the response is incomplete (server closed the connection?)",
                "incomplete_stream", req, [],
            )
        return self._finish(st, req, t_end)

    def _take_chunk(self, chunk: Any, st: _StreamResult, chat: bool, t: float, url: str) -> None:
        """Fold one parsed chunk into the stream state, stamping its tokens with time ``t``."""
        if not isinstance(chunk, dict):
            raise _StreamFailure(f"server-sent event #{st.events} from {url} is not a JSON object: {str(chunk)[:200]!r}",
                                 "malformed_stream")
        err = chunk.get("error")
        if err is not None or chunk.get("object") == "error":
            message = _error_message(json.dumps(chunk).encode(), 200)
            raise _StreamFailure(f"the server reported an error mid-stream: {message}", "stream_error")
        if isinstance(chunk.get("prompt_token_ids"), list):  # chat: top level, first chunk
            st.prompt_token_ids = chunk["prompt_token_ids"]
        if isinstance(chunk.get("usage"), dict):
            st.usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise _StreamFailure(f"server-sent event #{st.events} from {url}: 'choices' is not a list", "malformed_stream")
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
            else:
                text = choice.get("text")
            text = text if isinstance(text, str) else ""
            if isinstance(choice.get("prompt_token_ids"), list):  # completions: on the choice
                st.prompt_token_ids = choice["prompt_token_ids"]
            ids = choice.get("token_ids")
            ids = [int(x) for x in ids] if isinstance(ids, list) else None
            entries = self._logprob_entries(choice.get("logprobs"), chat)
            if ids is not None:
                st.saw_token_ids = True
                st.token_ids.extend(ids)
                n_tokens = len(ids)
                if entries and len(entries) == len(ids):
                    for e, tid in zip(entries, ids):
                        e.chunk_token_id = tid
            elif entries:
                n_tokens = len(entries)
            else:
                n_tokens = 1 if text else 0
            st.token_times.extend([t] * n_tokens)
            st.entries.extend(entries)
            st.text_parts.append(text)
            if choice.get("finish_reason") is not None:
                st.finish_reason = str(choice["finish_reason"])
                st.stop_reason = choice.get("stop_reason")

    @staticmethod
    def _logprob_entries(lp: Any, chat: bool) -> list[_LogprobEntry]:
        """Both OpenAI logprob shapes as a flat list of positions."""
        if not isinstance(lp, dict):
            return []
        out: list[_LogprobEntry] = []
        if chat:
            for item in lp.get("content") or []:
                if not isinstance(item, dict):
                    continue
                alts = [(str(a.get("token")), a.get("logprob")) for a in item.get("top_logprobs") or []
                        if isinstance(a, dict)]
                out.append(_LogprobEntry(str(item.get("token")), item.get("logprob"), alts, None))
        else:
            tokens = lp.get("tokens") or []
            values = lp.get("token_logprobs") or []
            tops = lp.get("top_logprobs") or []
            for j, tok in enumerate(tokens):
                top = tops[j] if j < len(tops) and isinstance(tops[j], dict) else {}
                out.append(_LogprobEntry(str(tok), values[j] if j < len(values) else None, list(top.items()), None))
        return out

    def _finish(self, st: _StreamResult, req: GenerationRequest, t_end: float) -> Completion:
        warnings: list[str] = []
        usage = st.usage or {}
        prompt_count = usage.get("prompt_tokens")
        if not isinstance(prompt_count, int):
            if st.prompt_token_ids is not None:
                prompt_count = len(st.prompt_token_ids)
            elif req.prompt_token_ids is not None:
                prompt_count = len(req.prompt_token_ids)
            else:
                prompt_count = None
        logprobs, token_texts = (None, None)
        if self._logprobs_asked(req) is not None:
            logprobs, token_texts, notes = self._map_logprobs(st.entries)
            warnings.extend(notes)
            if logprobs is not None and len(logprobs) != len(st.token_times):
                warnings.append(f"{len(logprobs)} logprob entries for {len(st.token_times)} tokens")
        text = "".join(st.text_parts)
        ids_source = "engine"
        if st.saw_token_ids:
            token_ids = list(st.token_ids)
            if len(token_ids) != len(st.token_times):  # cannot happen: ids drive the clock
                warnings.append(f"{len(token_ids)} token ids but {len(st.token_times)} token times")
        elif (logprobs and token_texts is not None and len(logprobs) == len(st.token_times)
              and self._spells(token_texts, text)):
            token_ids = [lp.token_id for lp in logprobs]
            ids_source = "recovered"
            warnings.append(
                f"the server ({self.flavor}) sent no token ids: recovered from the logprob token texts"
                " (each maps to exactly one id of the spec's tokenizer, and together they spell the output)"
            )
        else:
            token_ids = []
            ids_source = "none"
            warnings.append(
                f"the server ({self.flavor}) sent no token ids: token_ids left empty; token_times"
                " count streamed chunks" + (" / logprob entries" if st.entries else "") + " and may be approximate"
            )
        completion_tokens = usage.get("completion_tokens")
        if isinstance(completion_tokens, int) and completion_tokens != len(st.token_times):
            warnings.append(
                f"usage says {completion_tokens} completion tokens, the stream carried {len(st.token_times)}"
            )
        if st.finish_reason is None:
            warnings.append("the stream ended with [DONE] but no finish_reason")
        stop_reason, note = eos_stop_reason(st.stop_reason, req, "the server")
        if note:
            warnings.append(note)
        times = list(st.token_times)
        return Completion(
            text=text,
            token_ids=token_ids,
            token_texts=token_texts,
            finish_reason=st.finish_reason,
            stop_reason=stop_reason,
            logprobs=logprobs,
            prompt_token_count=prompt_count,
            token_ids_source=ids_source,
            completion_token_count=completion_tokens if isinstance(completion_tokens, int) else None,
            timings=Timings(ttft=times[0] if times else None, e2e=t_end, token_times=times, source="client-stream"),
            warnings=[self._redact(w) for w in warnings],
        )

    # -- logprobs ------------------------------------------------------------------------------
    def _map_logprobs(self, entries: list[_LogprobEntry]) -> tuple[Optional[list], Optional[list], list[str]]:
        """``(logprobs, token_texts, warnings)``; never invents an id for a token."""
        notes: list[str] = []
        out: list[TokenLogprobs] = []
        texts: list[str] = []
        any_text = False
        dropped = 0
        for pos, e in enumerate(entries):
            placeholder = _placeholder_id(e.token)
            sid = placeholder if placeholder is not None else e.chunk_token_id
            if sid is None:
                sid = self._id_for_text(e.token)
            if sid is None:
                notes.append(
                    f"logprobs dropped: the server gave no token id for output position {pos} ({e.token!r})"
                    + ("" if self.spec.tokenizer else "; set a tokenizer in the engine spec to map texts to ids")
                )
                return None, None, notes
            if placeholder is not None and e.chunk_token_id is not None and placeholder != e.chunk_token_id:
                notes.append(f"logprob token id {placeholder} differs from streamed token id {e.chunk_token_id} at {pos}")
            top: dict[int, float] = {}
            decoded: dict[int, str] = {}
            if placeholder is None:
                decoded[sid] = e.token
                texts.append(e.token)
                any_text = True
            for alt_text, alt_lp in e.alternatives:
                if alt_lp is None:
                    continue
                aid = _placeholder_id(alt_text)
                if aid is None:
                    aid = sid if alt_text == e.token else self._id_for_text(alt_text)
                    if aid is None:
                        dropped += 1
                        continue
                    decoded[aid] = alt_text
                top[aid] = float(alt_lp)
            out.append(TokenLogprobs(int(sid), None if e.logprob is None else float(e.logprob), top, decoded))
        if dropped:
            why = self._text_ids_note or (
                "no tokenizer in the engine spec" if not self.spec.tokenizer else "their text is not exactly one token"
            )
            notes.append(
                f"{dropped} top-logprob alternatives left out of TokenLogprobs.top: the server keys them by text"
                f" only and their ids cannot be known ({why})"
            )
        return out, (texts if any_text and len(texts) == len(out) else None), notes

    def _spells(self, token_texts: list[str], text: str) -> bool:
        """Whether the logprob token texts spell the output text: exactly, or but for trailing
        special tokens the text skips (the EOS an engine lists after stopping on it, e.g.
        trtllm-serve, whose outputs keep the end id while the text skips special tokens)."""
        if "".join(token_texts) == text:
            return True
        specials = set(getattr(self._tokenizer, "all_special_tokens", None) or ())
        k = len(token_texts)
        while k > 0 and token_texts[k - 1] in specials:
            k -= 1
            if "".join(token_texts[:k]) == text:
                return True
        return False

    def _ensure_text_index(self) -> None:
        """Map token text -> id for texts that exactly one token decodes to (needs spec.tokenizer)."""
        if self._text_ids is not None or not self.spec.tokenizer:
            return
        try:
            tok = self._load_tokenizer()
        except Exception as exc:  # a bad tokenizer must not sink generation; it costs only ids
            self._text_ids = {}
            self._text_ids_note = f"tokenizer {self.spec.tokenizer!r} failed to load: {exc}"
            return
        index: dict[str, Optional[int]] = {}
        for tid in range(len(tok)):
            text = tok.decode([tid])
            index[text] = None if text in index else tid  # None marks an ambiguous text
        self._text_ids = index

    def _id_for_text(self, text: str) -> Optional[int]:
        if self._text_ids is None:
            return None
        return self._text_ids.get(text)

    # -- tokenize / close ----------------------------------------------------------------------
    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            if not self.spec.tokenizer:
                raise OpenAIServerError("no tokenizer in the engine spec")
            from transformers import AutoTokenizer  # lazy: heavy

            self._tokenizer = AutoTokenizer.from_pretrained(self.spec.tokenizer)
        return self._tokenizer

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens): the server's ``/tokenize`` if it has one,
        else the spec's tokenizer loaded with transformers."""
        if self._client is None or self.model is None:
            raise RuntimeError("OpenAIEngine.start() must run before tokenize()")
        url = self.root + "/tokenize"
        reason = ""
        if self._tokenize_route is not False:
            try:
                resp = self._client.post(url, json={"model": self.model, "prompt": text, "add_special_tokens": False})
            except httpx.HTTPError as exc:
                raise OpenAIServerError(f"POST {url} failed: {self._redact(str(exc)) or type(exc).__name__}") from None
            if resp.status_code in (404, 405):
                self._tokenize_route = False
            elif resp.status_code >= 400:
                raise OpenAIServerError(
                    f"POST {url} answered HTTP {resp.status_code}: "
                    f"{self._redact(_error_message(resp.content, resp.status_code))}"
                )
            else:
                data = resp.json()
                tokens = data.get("tokens") if isinstance(data, dict) else None
                if not isinstance(tokens, list):
                    raise OpenAIServerError(f"POST {url} answered without a 'tokens' list: {str(data)[:200]}")
                self._tokenize_route = True
                return [int(t) for t in tokens]
            reason = f"the server has no {url} route (HTTP {resp.status_code})"
        else:
            reason = self._no_route or f"the server has no {url} route"
        if not self.spec.tokenizer:
            raise OpenAIServerError(
                f"cannot tokenize for engine {self.spec.label!r}: {reason} and the engine spec names no"
                " tokenizer (set tokenizer = the model's Hugging Face directory)"
            )
        return list(self._load_tokenizer().encode(text, add_special_tokens=False))

    def close(self) -> None:
        """Close the HTTP client; the server itself is not ours to stop."""
        if self._client is not None:
            self._client.close()
            self._client = None
