"""The engine worker: ``python -m pytest_engineparity.runtime.worker``.

Runs one engine adapter in its own process (optionally under another interpreter), so that a vLLM
venv and a TensorRT-LLM venv can be compared from one pytest run and ending the process frees all
of the engine's memory. Imports nothing from pytest.

Wire protocol (one JSON object per line):
- parent -> worker on stdin: ``{"op": "start"|"generate"|"tokenize"|"info"|"shutdown", ...}``
- worker -> parent on the file descriptor named by ``ENGINEPARITY_RESULT_FD``:
  ``{"type": "progress", ...}`` while working, then ``{"type": "result", "value": ...}`` or
  ``{"type": "error", "error_type": ..., "message": ..., "traceback": ...}``.
The engine's own output (stdout and stderr) goes to the worker log, never to the result channel.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Optional

RESULT_FD_ENV = "ENGINEPARITY_RESULT_FD"


class _Channel:
    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        line = json.dumps(msg, ensure_ascii=True)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _watch_parent(parent_pid: int) -> None:
    """Exit if the pytest process goes away, so no orphan engine keeps memory."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(3)


def _gpu_peak_bytes() -> Optional[int]:
    """Peak GPU memory this process reserved through torch (vLLM's KV cache included), if any."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count())))
    except Exception:  # never let a memory probe break a result
        return None
    return None


def _handle(engine: Any, msg: dict[str, Any], chan: _Channel) -> Any:
    from ..types import GenerationRequest

    op = msg.get("op")
    if op == "generate":
        requests = [GenerationRequest.from_dict(d) for d in msg["requests"]]
        last = [0.0]

        def progress(done: int, total: int, tokens: int) -> None:
            now = time.monotonic()
            # at most ~5 messages a second, but always the final one
            if done == total or now - last[0] >= 0.2:
                last[0] = now
                chan.send({"type": "progress", "done": done, "total": total, "tokens": tokens})

        completions = engine.generate(requests, progress)
        if len(completions) != len(requests):
            raise RuntimeError(
                f"engine returned {len(completions)} completions for {len(requests)} requests"
            )
        return [c.to_dict() for c in completions]
    if op == "tokenize":
        return list(engine.tokenize(msg["text"]))
    if op == "fault":  # test hook: lets tests prove that a hung or dying worker is handled
        if msg.get("what") == "hang":
            time.sleep(10**6)
        os._exit(int(msg.get("code", 17)))
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    fd = int(os.environ[RESULT_FD_ENV])
    chan = _Channel(fd)
    # Anything the engine prints goes to the log (our stdout is the log file already).
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()

    from ..engines.base import EngineSpec
    from ..engines.registry import load_adapter

    engine: Optional[Any] = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        op = msg.get("op")
        try:
            if op == "shutdown":
                if engine is not None:
                    engine.close()
                chan.send({"type": "result", "value": None})
                sys.stdout.flush()
                sys.stderr.flush()
                # skip interpreter teardown (a second or more with torch loaded): the OS frees
                # everything the engine held the moment the process is gone
                os._exit(0)
            if op == "start":
                cls = load_adapter(msg["adapter"])
                spec = EngineSpec.from_dict(msg["spec"])
                engine = cls(spec)
                info = engine.start()
                chan.send({"type": "result", "value": info.to_dict(), "gpu_peak_bytes": _gpu_peak_bytes()})
                continue
            if op == "probe":  # facts about this interpreter, with or without an engine
                from .probes import run_probe

                chan.send({"type": "result", "value": run_probe(msg["what"])})
                continue
            if engine is None:
                raise RuntimeError("engine not started")
            chan.send({"type": "result", "value": _handle(engine, msg, chan), "gpu_peak_bytes": _gpu_peak_bytes()})
        except BaseException as exc:  # report everything, including KeyboardInterrupt
            traceback.print_exc()
            sys.stderr.flush()
            chan.send({
                "type": "error",
                "error_type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            })
            if op == "start" or isinstance(exc, (KeyboardInterrupt, SystemExit, MemoryError)):
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
