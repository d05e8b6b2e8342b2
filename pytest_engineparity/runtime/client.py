"""The pytest side of an engine worker: start it, talk to it, never hang on it.

``EngineWorker`` offers the engine interface (start / generate / tokenize / close) and runs the
adapter in a child process (``python -m pytest_engineparity.runtime.worker``), under the spec's own
interpreter when one is given. Every wait is bounded: a worker that dies raises ``EngineDied``
with its exit status and log tail; one that stays silent past its timeout is killed and raises
``EngineTimeout``. Nothing here imports an engine package.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..engines.base import EngineSpec, EngineSpecError, ProgressFn
from ..engines.registry import adapter_class, adapter_path
from ..errors import EngineDied, EngineError, EngineStartError, EngineTimeout, RemoteError
from ..types import Completion, EngineInfo, GenerationRequest
from .worker import RESULT_FD_ENV

__all__ = ["EngineError", "EngineDied", "EngineTimeout", "EngineStartError", "EngineWorker", "probe_interpreter"]

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)
LOG_TAIL_LINES = 40

# Every worker gets these unless the spec overrides them: the GPU boxes here require NCCL's
# NVLink multicast off, and they are harmless elsewhere.
DEFAULT_WORKER_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


_LIVE: "weakref.WeakSet[EngineWorker]" = weakref.WeakSet()


@atexit.register
def _kill_all() -> None:  # no orphan engines, even when pytest is interrupted
    for w in list(_LIVE):
        w.kill()


def validate_spec(spec: EngineSpec) -> None:
    """Checks that need no engine: known kind, interpreter exists, adapter's own checks."""
    cls = adapter_class(spec.kind)
    if spec.python:
        exe = shutil.which(spec.python) if os.sep not in spec.python else spec.python
        if not exe or not os.path.isfile(exe) or not os.access(exe, os.X_OK):
            raise EngineSpecError(
                f"engine {spec.label!r}: interpreter {spec.python!r} does not exist or is not executable"
            )
    from .placement import check_placement, tensor_parallel_size, visible_gpu_count

    needs_gpus = spec.devices is not None or tensor_parallel_size(spec) > 1
    check_placement(spec, visible_gpu_count() if needs_gpus else None)
    validator = getattr(cls, "validate", None)
    if validator is not None:
        validator(spec)


class EngineWorker:
    """One engine in one child process."""

    def __init__(self, spec: EngineSpec, log_dir: Optional[str] = None, name: Optional[str] = None):
        self.spec = spec
        self.name = name or spec.label
        self.info: Optional[EngineInfo] = None
        self.start_seconds: Optional[float] = None
        self._proc: Optional[subprocess.Popen] = None
        self._rfd: Optional[int] = None
        self._buf = b""
        self._log_dir = log_dir or tempfile.mkdtemp(prefix="engineparity-")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)[:60]
        self.log_path = Path(self._log_dir) / f"worker-{safe}-{os.getpid()}-{id(self)}.log"
        self.peak_rss_bytes: Optional[int] = None
        self.peak_gpu_bytes: Optional[int] = None
        self.peak_gpu_source: Optional[str] = None
        self.last_pid: Optional[int] = None  # torch-reserved GPU memory, as the worker reports it

    # -- lifecycle -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k, v in DEFAULT_WORKER_ENV.items():
            env.setdefault(k, v)
        env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self.spec.devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in self.spec.devices)
        env.update({str(k): str(v) for k, v in self.spec.env.items()})
        return env

    def start(self) -> EngineInfo:
        if self._proc is not None:
            raise RuntimeError(f"engine {self.name!r} already started")
        validate_spec(self.spec)
        t0 = time.monotonic()
        self._spawn()
        try:
            value = self._call(
                {"op": "start", "adapter": adapter_path(self.spec.kind), "spec": self.spec.to_dict()},
                timeout=self.spec.start_timeout, what="start",
            )
        except RemoteError as exc:
            self.kill()
            raise EngineStartError(self.name, f"failed to start: {exc.reason}", self.log_tail()) from None
        except EngineError:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - t0
        self.info = EngineInfo.from_dict(value)
        self._sample_gpu()
        return self.info

    def probe(self, what: str, timeout: float = 120.0) -> Any:
        """A fact from the worker's interpreter (``runtime.probes``); spawns the worker (without
        starting the engine) if it is not running."""
        if self._proc is None:
            self._spawn()
        return self._call({"op": "probe", "what": what}, timeout=timeout, what=f"probe {what}")

    def _spawn(self) -> None:
        python = self.spec.python or sys.executable
        rfd, wfd = os.pipe()
        env = self._env()
        env[RESULT_FD_ENV] = str(wfd)
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "pytest_engineparity.runtime.worker"],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(wfd,), env=env, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            os.close(rfd)
            raise EngineStartError(self.name, f"cannot start worker with {python!r}: {exc}") from exc
        finally:
            os.close(wfd)
            log.close()
        self._rfd = rfd
        self.last_pid = self._proc.pid
        _LIVE.add(self)

    def close(self, timeout: float = 30.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._call({"op": "shutdown"}, timeout=timeout, what="shutdown")
            except EngineError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # the worker is gone; take down anything it left in its process group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._sample_rss()
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None
        self._proc = None
        _LIVE.discard(self)

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- calls -----------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], progress: Optional[ProgressFn] = None) -> list[Completion]:
        if not requests:
            return []
        value = self._call(
            {"op": "generate", "requests": [r.to_dict() for r in requests]},
            timeout=self.spec.request_timeout, what=f"generate ({len(requests)} requests)",
            on_progress=progress,
        )
        self._sample_gpu()
        return [Completion.from_dict(d) for d in value]

    def _sample_gpu(self) -> None:
        """The worker reports what torch reserved in its own process; tensor-parallel ranks run in
        child processes it cannot see. NVML sees the whole process tree (all GPUs together): the
        peak is the larger of the two. Nothing happens without NVML."""
        from .gpumem import gpu_memory_bytes

        nvml = gpu_memory_bytes(self.pid)
        if nvml is not None and (self.peak_gpu_bytes is None or nvml > self.peak_gpu_bytes):
            self.peak_gpu_bytes = int(nvml)
            self.peak_gpu_source = "NVML, the worker's process tree (every GPU it uses)"

    def tokenize(self, text: str) -> list[int]:
        return list(self._call({"op": "tokenize", "text": text}, timeout=self.spec.request_timeout, what="tokenize"))

    def inject_fault(self, what: str = "exit", code: int = 17) -> None:
        """Send the worker a fault message (tests prove death/hang handling with it)."""
        self._send({"op": "fault", "what": what, "code": code})

    def _send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise EngineDied(self.name, "worker is not running", self.log_tail())
        try:
            proc.stdin.write((json.dumps(msg) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            status = proc.wait(timeout=10)
            raise EngineDied(self.name, "worker died before it could take the request",
                             self.log_tail(), status) from None

    def _call(self, msg: dict[str, Any], timeout: float, what: str,
              on_progress: Optional[Callable[[int, int, int], None]] = None) -> Any:
        self._send(msg)
        assert self._rfd is not None and self._proc is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self._rfd, selectors.EVENT_READ)
        try:
            while True:
                while b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    reply = json.loads(line)
                    kind = reply.get("type")
                    if kind == "progress":
                        deadline = time.monotonic() + timeout  # silence, not total time, is bounded
                        self._sample_rss()
                        if on_progress:
                            on_progress(reply["done"], reply["total"], reply["tokens"])
                        continue
                    if kind == "result":
                        self._sample_rss()
                        gpu = reply.get("gpu_peak_bytes")
                        if gpu is not None and (self.peak_gpu_bytes is None or gpu > self.peak_gpu_bytes):
                            self.peak_gpu_bytes = int(gpu)
                            self.peak_gpu_source = "torch.cuda.max_memory_reserved in the worker process"
                        return reply["value"]
                    if kind == "error":
                        raise RemoteError(self.name, reply.get("error_type", "Error"),
                                          reply.get("message", ""), self.log_tail())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise EngineTimeout(
                        self.name, f"no answer to {what} for {timeout:.0f} s; worker killed", self.log_tail()
                    )
                if not sel.select(timeout=min(remaining, 1.0)):
                    continue
                chunk = os.read(self._rfd, 1 << 20)
                if not chunk:  # EOF: the worker is gone
                    try:
                        status = self._proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        status = None
                    tail = self.log_tail()
                    self.kill()
                    raise EngineDied(self.name, f"worker died during {what}", tail, status)
                self._buf += chunk
        finally:
            sel.close()

    # -- diagnostics -----------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def _sample_rss(self) -> None:
        """Peak resident memory of the worker (Linux VmHWM; best effort, cheap)."""
        if self._proc is None:
            return
        peak = _peak_rss(self._proc.pid)
        if peak and (self.peak_rss_bytes is None or peak > self.peak_rss_bytes):
            self.peak_rss_bytes = peak


def _peak_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def probe_interpreter(spec: EngineSpec, what: str, timeout: float = 120.0) -> Any:
    """Ask a fresh worker under ``spec``'s interpreter and environment for ``what``, start no
    engine, and end the worker."""
    w = EngineWorker(spec, name=spec.label)
    try:
        return w.probe(what, timeout=timeout)
    finally:
        w.close()
