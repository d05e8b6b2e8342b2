"""tensorrt_llm.executor.result (contract double).

Contract, "Outputs (tensorrt_llm.executor.result)":
- ``RequestOutput``: request_id, prompt, prompt_token_ids, outputs, finished.
- ``CompletionOutput``: index, text, token_ids, cumulative_logprob, logprobs (list of
  dict[token_id -> Logprob(logprob, rank)] or list[float]), finish_reason
  ('stop' | 'length' | 'timeout' | 'cancelled'), stop_reason, request_perf_metrics.
Contract, "generate": ``generate_async(..., streaming=True)`` yields partial RequestOutputs
(``async for``); ``generate`` returns finished ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Optional

__all__ = ["Logprob", "CompletionOutput", "RequestOutput"]


class Logprob(NamedTuple):
    """contract: Logprob(logprob, rank)."""

    logprob: float
    rank: Optional[int] = None


@dataclass
class CompletionOutput:
    index: int
    text: str = ""
    token_ids: list = field(default_factory=list)
    cumulative_logprob: Optional[float] = None
    # facts completion_output: field(default_factory=list) -- [] when no logprobs, never None
    logprobs: Optional[list] = field(default_factory=list)
    finish_reason: Optional[str] = None  # 'stop' | 'length' | 'timeout' | 'cancelled'
    stop_reason: Any = None
    request_perf_metrics: Any = None  # NOT IN CONTRACT (structure): always None in the double


class _Update(NamedTuple):
    output: Optional[CompletionOutput]
    finished: bool
    error: Optional[BaseException]


class RequestOutput:
    """A request's state as the engine produces it.

    The executor thread pushes snapshots; ``async for`` (streaming) sees each one, ``result()`` /
    ``aresult()`` wait for the last. An error from the executor (``RequestError``) is raised to
    whoever waits.
    """

    def __init__(self, request_id: int, prompt: Optional[str], prompt_token_ids: list,
                 streaming: bool) -> None:
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = list(prompt_token_ids)
        self.outputs: list[CompletionOutput] = [CompletionOutput(index=0)]
        self.finished = False
        self._streaming = streaming
        self._cond = threading.Condition()
        self._updates: deque[_Update] = deque()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._final_seen = False

    def __repr__(self) -> str:
        o = self.outputs[0]
        return (f"RequestOutput(request_id={self.request_id}, finished={self.finished},"
                f" token_ids={o.token_ids!r}, finish_reason={o.finish_reason!r})")

    # -- producer side (executor thread) ------------------------------------------------------
    def _push(self, output: Optional[CompletionOutput], finished: bool,
              error: Optional[BaseException] = None) -> None:
        snapshot = replace(output, token_ids=list(output.token_ids),
                           logprobs=list(output.logprobs) if output.logprobs is not None else None
                           ) if output is not None else None
        with self._cond:
            self._updates.append(_Update(snapshot, finished or error is not None, error))
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # the consumer's loop is closed: nobody is waiting any more
                pass

    # -- consumer side -----------------------------------------------------------------------
    def _apply(self, upd: _Update) -> None:
        if upd.output is not None:
            self.outputs = [upd.output]
        if upd.finished:
            self.finished = True
            self._final_seen = True
        if upd.error is not None:
            raise upd.error

    def _take(self) -> Optional[_Update]:
        """Next update to hand out (non-streaming: only the final one); caller holds the lock."""
        while self._updates:
            upd = self._updates.popleft()
            if self._streaming or upd.finished:
                return upd
            self._apply(upd)
        return None

    def __aiter__(self) -> "RequestOutput":
        return self

    async def __anext__(self) -> "RequestOutput":
        while True:
            loop = asyncio.get_running_loop()
            with self._cond:
                if self._final_seen:
                    raise StopAsyncIteration
                upd = self._take()
                if upd is None:
                    fut = loop.create_future()
                    self._waiters.append((loop, fut))
            if upd is not None:
                self._apply(upd)
                return self
            await fut

    async def aresult(self) -> "RequestOutput":
        async for _ in self:
            pass
        return self

    def result(self, timeout: Optional[float] = None) -> "RequestOutput":
        with self._cond:
            while not self._final_seen:
                while self._updates:
                    self._apply(self._updates.popleft())
                if self._final_seen:
                    break
                if not self._cond.wait(timeout):
                    raise TimeoutError(f"request {self.request_id} did not finish in {timeout} s")
        return self


def _wake(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)
