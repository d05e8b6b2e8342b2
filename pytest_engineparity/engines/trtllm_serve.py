"""A managed ``trtllm-serve`` (TensorRT-LLM's OpenAI server): started in the engine's worker, under
the engine's own interpreter, and taken down with the session; requests go through the ``openai``
adapter's request path, composed (``serving.ServedOpenAI``), which detects the trtllm flavour
(strict request models, no token ids, logprobs limits) and asks only for what the server gives.

Spec: ``EngineSpec(kind="trtllm-serve", target=<engine dir or Hugging Face checkpoint dir>, args={...})``.

The command is ``python -m tensorrt_llm.commands.serve TARGET --host 127.0.0.1 --port P
[--backend B] [--tokenizer T] <flags>`` (the ``trtllm-serve`` console script's module; flags as
``tensorrt_llm/commands/serve.py`` declares them, with underscores: ``--max_batch_size``,
``--max_seq_len``, ``--kv_cache_free_gpu_memory_fraction``, ``--extra_llm_api_options``, ...).
Read from the public source (main, 2026; and the older ``--backend`` choices of 0.x/1.0), not run
here: TensorRT-LLM cannot be installed on this machine.

``args``:

- ``backend``: ``"tensorrt"`` for a compiled engine dir (a ``config.json`` with ``build_config``),
  else ``"pytorch"``; ``""`` leaves ``--backend`` out (0.x, whose default path was the C++ engine
  and whose ``--backend`` took only ``pytorch``);
- ``command``: the argv prefix instead of ``[python, -m, tensorrt_llm.commands.serve]`` (e.g. the
  project's stand-in, ``[python, tests/trtllm_serve_standin.py]``);
- ``server_args``: extra command-line words, passed as they are;
- the ``openai`` adapter's client args (``concurrency``, ``request_rate``, ...) configure the client;
- every other key is a server flag, spelled with underscores as trtllm-serve does
  (``{"max_batch_size": 8}`` -> ``--max_batch_size 8``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from ..types import Completion, EngineInfo, GenerationRequest
from .base import Capabilities, EngineSpec, EngineSpecError, ProgressFn
from .serving import ManagedServer, ServedOpenAI, cli_flags, load_client_for

__all__ = ["TRTLLMServeEngine"]

SERVER_MODULE = "tensorrt_llm.commands.serve"
BACKENDS = ("pytorch", "tensorrt", "trt", "_autodeploy", "")


def _is_engine_dir(path: str) -> bool:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "build_config" in cfg


def split_args(args: dict, target: Optional[str]) -> tuple[dict, dict, list, Optional[list], str]:
    """``(client args, server flags, raw words, command prefix or None, backend)``."""
    from .openai import KNOWN_ARGS

    client_names = set(KNOWN_ARGS) - {"model", "flavor"}
    client = {k: v for k, v in args.items() if k in client_names}
    backend = args.get("backend")
    if backend is None:
        backend = "tensorrt" if target and _is_engine_dir(target) else "pytorch"
    command = args.get("command")
    flags = {k: v for k, v in args.items()
             if k not in client_names and k not in ("backend", "command", "server_args")}
    return client, flags, list(args.get("server_args") or []), (list(command) if command else None), str(backend)


class TRTLLMServeEngine:
    """The Engine protocol over a trtllm-serve this adapter starts (see the module docstring)."""

    kind: ClassVar[str] = "trtllm-serve"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(
        transport="http",
        limits_source="GET /v1/models of the managed server",
        packages=(("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11")),
                  ("tensorrt_llm", ("tensorrt-llm",)), ("torch", ("torch",))),
        embedded_args={"max_seq_len": 2048},
        compiled_engine_dir=True,
        token_ids=False, logprobs_top_k=0, tokenize=False,
        notes=("trtllm-serve started and stopped by the worker; timings are the client's clock on the stream",
               "token ids, logprobs and /tokenize are probed at start"),
    )

    @classmethod
    def capabilities(cls, spec: EngineSpec) -> Capabilities:
        tokenizer = bool(spec is not None and spec.tokenizer)
        return cls.CAPABILITIES.replace(tokenize=tokenizer)

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        client, flags, raw, command, backend = split_args(dict(spec.args or {}), spec.target)
        self._flags, self._raw, self._prefix, self.backend = flags, raw, command, backend
        server = ManagedServer(f"trtllm-serve {spec.label!r}", self.command, dict(os.environ))
        self._served_openai = ServedOpenAI(spec, self.kind, server, client, None)

    @classmethod
    def validate(cls, spec: EngineSpec) -> None:
        if not spec.target or not os.path.isdir(spec.target):
            raise EngineSpecError(f"engine {spec.label!r}: trtllm-serve needs target = an engine directory or a "
                                  f"Hugging Face checkpoint directory; {spec.target!r} is not a directory")
        args = dict(spec.args or {})
        if args.get("backend") not in (None, *BACKENDS):
            raise EngineSpecError(f"engine {spec.label!r}: args.backend = {args['backend']!r}; use one of "
                                  "pytorch, tensorrt, _autodeploy, or \"\" to leave --backend out")
        for key in ("command", "server_args"):
            v = args.get(key)
            if v is not None and (not isinstance(v, list) or not v and key == "command"
                                  or not all(isinstance(w, str) for w in v)):
                raise EngineSpecError(f"engine {spec.label!r}: args.{key} must be a list of strings")
        for k in ("host", "port"):
            if k in args:
                raise EngineSpecError(f"engine {spec.label!r}: args.{k} is chosen by the adapter; leave it out")

    def command(self, port: int) -> list[str]:
        prefix = self._prefix or [sys.executable, "-m", SERVER_MODULE]
        return [*prefix, str(self.spec.target), "--host", "127.0.0.1", "--port", str(port),
                *(["--backend", self.backend] if self.backend else []),
                *(["--tokenizer", self.spec.tokenizer] if self.spec.tokenizer else []),
                *cli_flags(self._flags, dashes=False), *self._raw]

    def start(self) -> EngineInfo:
        version = None
        try:
            from importlib.metadata import version as dist_version

            version = f"tensorrt_llm {dist_version('tensorrt-llm')}"
        except Exception:  # not installed where the worker runs (a stand-in): the server's /version says
            version = None
        return self._served_openai.start(version, {"backend": self.backend})

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        return self._served_openai.generate(requests, progress)

    def tokenize(self, text: str) -> list[int]:
        return self._served_openai.tokenize(text)

    def close(self) -> None:
        self._served_openai.close()

    @classmethod
    def load_client(cls, spec: EngineSpec, info: Any) -> Any:
        return load_client_for(spec, info, {})
