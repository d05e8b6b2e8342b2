"""The narrow context a check family works through (and nothing else of the session).

A family is a plain object built with one ``CheckContext``. Through it, it can:
- declare requests and read results: ``register``, ``run_pending``, ``result``, ``suite_results``,
  ``suite_requests``, ``completions`` (read-only), ``self_run``, ``noise_floor``, ``similarities``;
- use each engine directly: ``reference`` / ``candidate`` / ``engine(role)`` (an ``EngineView``:
  name, role, spec, capabilities, info, generate, tokenize, probe);
- record checks: ``record(name, verdict, detail, numbers)``, ``properties`` (JUnit properties);
- own a report section: ``section(name, default)`` / ``set_section(name, value)``;
- keep per-session state: ``state(key, factory)`` (replaces module-level caches);
- read the configuration: ``cfg``, ``policy`` (the equivalence rule, narrowed per test).

The session implements it (``session.SessionContext``); tests may implement it with recorded
data. This module imports nothing of the plugin's upper layers.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence, TypeVar

from ..types import Completion, GenerationRequest

__all__ = ["CheckContext", "EngineViewLike"]

T = TypeVar("T")


class EngineViewLike(Protocol):
    role: str
    name: str
    spec: Any

    @property
    def info(self) -> Any: ...
    @property
    def capabilities(self) -> Any: ...
    def generate(self, requests: Sequence[GenerationRequest], label: str = ...) -> list[Completion]: ...
    def tokenize(self, text: str) -> list[int]: ...


class CheckContext(Protocol):
    cfg: Any
    policy: Any
    properties: list
    reference: EngineViewLike
    candidate: EngineViewLike
    single_engine: bool

    def engine(self, role: str) -> EngineViewLike: ...
    def register(self, requests: Iterable[GenerationRequest], aux: bool = False) -> None: ...
    def run_pending(self) -> None: ...
    def result(self, request: GenerationRequest, policy: Any = None) -> Any: ...
    def suite_results(self, policy: Any = None) -> list: ...
    def suite_requests(self) -> list[GenerationRequest]: ...
    def completions(self, role: str) -> Mapping[str, Completion]: ...
    def self_run(self, role: str, request: GenerationRequest) -> Optional[Completion]: ...
    @property
    def noise_floor(self) -> Mapping[str, Any]: ...
    def similarities(self, pairs: list[tuple[str, str]]) -> list[float]: ...
    def retokenizer(self) -> Any: ...
    def record(self, name: str, verdict: str, detail: str = "", numbers: Optional[dict] = None) -> Any: ...
    def section(self, name: str, default: Optional[Callable[[], Any]] = None) -> Any: ...
    def set_section(self, name: str, value: Any) -> None: ...
    def state(self, key: str, factory: Callable[[], T]) -> T: ...
