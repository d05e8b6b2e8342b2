"""What the managed-server kinds share (``vllm-serve``, ``trtllm-serve``): start a real OpenAI
server, wait until it answers, take it down with everything it spawned; and the client side, the
``openai`` adapter, composed over it.

``ManagedServer`` runs one server command on a free port of 127.0.0.1:

- **no orphans**: the server stays in the worker's process group (the worker is a session leader,
  see ``runtime/client.py``), so the pytest side's ``killpg`` on the worker takes the server and
  its children (vLLM's engine core) with it; on Linux the server also gets ``PR_SET_PDEATHSIG``
  (SIGTERM when the worker dies, however it dies); ``stop()`` ends the server's process tree
  (SIGTERM, a bounded wait, then SIGKILL of whatever is left);
- **bounded waits**: readiness is ``GET /health`` answering 200 and ``GET /v1/models`` listing a
  model, within ``timeout`` seconds; a server that exits first, or the deadline, raises
  ``ServerStartError`` with the command and the last lines of the server's own log;
- a port taken between choosing it and the server binding it ("address already in use") is
  retried once on a new port.

``ServedOpenAI`` composes a ``ManagedServer`` with an ``OpenAIEngine`` pointed at it: the managed
kinds build their command line and hand generation, tokenization and load driving to the
``openai`` adapter's request path (nothing of it is copied).

Nothing here imports an engine package: the server is a separate process of the engine's own
interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional, Sequence

from ..runtime.files import process_tree
from ..types import Completion, EngineInfo, GenerationRequest
from .base import EngineSpec, ProgressFn

__all__ = ["ManagedServer", "ServerStartError", "ServedOpenAI", "free_port", "cli_flags", "process_tree",
           "load_client_for"]

LOG_TAIL_LINES = 60
POLL_S = 0.5
STOP_GRACE_S = 20.0


class ServerStartError(RuntimeError):
    """The server did not become ready; the message carries the command and the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cli_flags(args: dict, dashes: bool = True) -> list[str]:
    """Engine args as command-line flags: ``{"max_num_seqs": 1, "enforce_eager": True}`` ->
    ``["--max-num-seqs", "1", "--enforce-eager"]`` (``dashes=False`` keeps underscores, as
    trtllm-serve spells its flags). ``False`` / ``None`` leave a flag out; a list repeats its
    values after one flag; a dict is passed as JSON."""
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + (str(key).replace("_", "-") if dashes else str(key))
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """PR_SET_PDEATHSIG = SIGTERM: the server ends when the worker that started it ends."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except Exception:
        pass


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


class ManagedServer:
    """One server process: ``start()`` -> base URL (``http://127.0.0.1:<port>``), ``stop()``.

    ``command(port)`` returns the argv for a port; ``env`` is the server's whole environment.
    """

    def __init__(self, name: str, command: Any, env: Optional[dict] = None, host: str = "127.0.0.1",
                 log_dir: Optional[str] = None) -> None:
        self.name = name
        self._command = command
        self.env = dict(os.environ if env is None else env)
        self.host = host
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="engineparity-server-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.argv: list[str] = []
        self.ready_seconds: Optional[float] = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float) -> str:
        """Start the server and wait for it (see the module docstring); returns its base URL."""
        t0 = time.monotonic()
        for attempt in (1, 2):
            self.port = free_port(self.host)
            self.argv = [str(a) for a in self._command(self.port)]
            with open(self.log_path, "ab") as log:
                log.write(f"\n[engineparity] {' '.join(self.argv)}\n".encode())
                log.flush()
                try:
                    self.proc = subprocess.Popen(
                        self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                        close_fds=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
                except OSError as exc:
                    raise ServerStartError(f"{self.name}: cannot run {self.argv[0]!r}: {exc}") from None
            try:
                self._wait_ready(t0 + timeout, timeout)
            except ServerStartError as exc:
                self.stop()
                if attempt == 1 and "address already in use" in str(exc).lower():
                    continue  # the free port was taken before the server bound it: once more
                raise
            self.ready_seconds = time.monotonic() - t0
            return self.base_url
        raise AssertionError("unreachable")  # pragma: no cover

    def _failure(self, why: str) -> ServerStartError:
        return ServerStartError(f"{self.name}: {why}\ncommand: {' '.join(self.argv)}\n"
                                f"--- last lines of the server log {self.log_path} ---\n{_log_tail(self.log_path)}")

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        assert self.proc is not None
        base = self.base_url
        health = None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._failure(f"the server exited with status {code} before it was ready")
            health, _ = _get(base + "/health")
            if health == 200:
                status, body = _get(base + "/v1/models")
                try:
                    cards = json.loads(body).get("data") if status == 200 else None
                except (ValueError, AttributeError):
                    cards = None
                if cards:
                    return
            if time.monotonic() > deadline:
                raise self._failure(f"not ready after {timeout:.0f} s (GET {base}/health answered "
                                    f"{health or 'nothing'}; raise start_timeout / --parity-start-timeout)")
            time.sleep(POLL_S)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """End the server and every process it started: SIGTERM, wait up to ``grace`` seconds,
        then SIGKILL whatever of its tree is still there. Safe to call twice."""
        proc = self.proc
        if proc is None:
            return
        tree = process_tree(proc.pid)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree + [p for p in process_tree(proc.pid) if p not in tree]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        self.proc = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _log_tail(self.log_path, lines)


class ServedOpenAI:
    """A managed server plus the ``openai`` adapter pointed at it (composition, see the module
    docstring). ``client_args``: the adapter args of ``OpenAIEngine`` (``concurrency``, ...)."""

    def __init__(self, spec: EngineSpec, kind: str, server: ManagedServer, client_args: dict,
                 served_model: Optional[str]) -> None:
        self.spec = spec
        self.kind = kind
        self.server = server
        self.client_args = dict(client_args)
        self.served_model = served_model
        self.client: Any = None

    def client_spec(self, base_url: str, **args: Any) -> EngineSpec:
        """The ``openai`` spec of a client of this server (the same name, key and timeouts)."""
        merged = {**self.client_args, **args}
        if self.served_model and "model" not in merged:
            merged["model"] = self.served_model
        return EngineSpec(kind="openai", target=base_url, name=self.spec.label, tokenizer=self.spec.tokenizer,
                          api_key_env=self.spec.api_key_env, env=dict(self.spec.env), args=merged,
                          start_timeout=self.spec.start_timeout, request_timeout=self.spec.request_timeout)

    def start(self, version: Optional[str], extra_details: Optional[dict] = None) -> EngineInfo:
        from .openai import OpenAIEngine

        base = self.server.start(self.spec.start_timeout)
        try:
            self.client = OpenAIEngine(self.client_spec(base))
            info = self.client.start()
        except BaseException:
            self.server.stop()
            raise
        details = dict(info.details)
        details.update({
            "managed_server": True, "served_model": self.client.model, "server_command": self.server.argv,
            "server_pid": self.server.proc.pid if self.server.proc else None, "server_log": str(self.server.log_path),
            "server_ready_s": self.server.ready_seconds, "client": "openai adapter (composed)",
            **(extra_details or {}),
        })
        return EngineInfo(kind=self.kind, model=str(self.spec.target), version=version or info.version,
                          limits=info.limits, details=details)

    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        if self.client is None:
            raise RuntimeError(f"{self.kind}: start() must run before generate()")
        return self.client.generate(requests, progress)

    def tokenize(self, text: str) -> list[int]:
        if self.client is None:
            raise RuntimeError(f"{self.kind}: start() must run before tokenize()")
        return self.client.tokenize(text)

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.client = None
            self.server.stop()


def load_client_for(spec: EngineSpec, info: Any, client_args: dict) -> Any:
    """A started ``OpenAIEngine`` in *this* process aimed at the server a managed engine started
    (``info.details["base_url"]``), for driving a load schedule (see ``OpenAIEngine.load_client``)."""
    from .openai import OpenAIEngine

    details = info.get("details") if isinstance(info, dict) else getattr(info, "details", None)
    base = (details or {}).get("base_url")
    if not base:
        return None
    model = (details or {}).get("served_model")
    args = {**client_args, "max_retries": 0}
    if model:
        args["model"] = model
    client_spec = EngineSpec(kind="openai", target=str(base), name=spec.label, tokenizer=spec.tokenizer,
                             api_key_env=spec.api_key_env, env=dict(spec.env), args=args,
                             start_timeout=spec.start_timeout, request_timeout=spec.request_timeout)
    client = OpenAIEngine(client_spec)
    client.start()
    return client
