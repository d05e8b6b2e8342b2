"""tensorrt_llm.executor.utils (contract double).

Contract, "Limits and errors": enqueue failures surface as
``tensorrt_llm.executor.utils.RequestError`` (a RuntimeError).
"""

from __future__ import annotations

__all__ = ["RequestError"]


class RequestError(RuntimeError):
    """The executor could not take or finish a request."""
