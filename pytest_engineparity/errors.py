"""Every error the plugin raises on purpose, in the lowest layer: any module may import it.

- ``ParityMismatch``: a parity assertion failed (an ``AssertionError``: pytest shows it as a failure).
- ``ConfigError``: a bad option, ini value or config entry (the plugin turns it into exit 4).
- ``EngineError`` and its kinds: an engine worker failed to start, died, went silent, or its
  adapter raised. ``EngineUnavailable``: a later use of an engine that already failed; one short
  line that points to the first, full report.
"""

from __future__ import annotations

import signal
from typing import Optional

__all__ = ["ParityMismatch", "ConfigError", "EngineError", "EngineDied", "EngineTimeout", "EngineStartError",
           "RemoteError", "EngineUnavailable"]


class ParityMismatch(AssertionError):
    """A parity assertion failed; the message explains itself (prompt, aligned outputs, logprobs)."""


class ConfigError(ValueError):
    """A bad option, ini value or config file entry; the message names it."""


def _signal_name(status: int) -> str:
    if status < 0:
        try:
            return f", killed by {signal.Signals(-status).name}"
        except ValueError:
            return ""
    return ""


class EngineError(RuntimeError):
    """An engine worker failed; the message carries the engine's own words and its log tail."""

    def __init__(self, engine: str, message: str, log_tail: str = "", exit_status: Optional[int] = None):
        self.engine = engine
        self.exit_status = exit_status
        self.log_tail = log_tail
        self.reason = message
        text = f"engine {engine!r}: {message}"
        if exit_status is not None:
            text += f" (exit status {exit_status}{_signal_name(exit_status)})"
        if log_tail:
            text += f"\n--- last lines of the {engine} worker log ---\n{log_tail}"
        super().__init__(text)


class EngineDied(EngineError):
    pass


class EngineTimeout(EngineError):
    pass


class EngineStartError(EngineError):
    pass


class RemoteError(EngineError):
    """The adapter raised inside the worker (the worker is still alive)."""

    def __init__(self, engine: str, error_type: str, message: str, log_tail: str = ""):
        self.error_type = error_type
        super().__init__(engine, f"{error_type}: {message}", log_tail)


class EngineUnavailable(RuntimeError):
    """An engine that already failed is needed again. A fresh exception every time (never the
    first one re-raised: its traceback would grow with every test), one line, pointing to where
    the failure was reported in full."""

    def __init__(self, engine: str, first: EngineError, where: str):
        self.engine = engine
        self.first = first
        summary = first.reason.splitlines()[0] if first.reason else type(first).__name__
        super().__init__(f"engine {engine!r} is unavailable ({type(first).__name__}: {summary}); "
                         f"reported in full {where}")
