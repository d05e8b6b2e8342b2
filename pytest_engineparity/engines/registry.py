"""Find engine adapters by kind through the ``pytest_engineparity.engines`` entry-point group."""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from .base import EngineSpecError

ENTRY_POINT_GROUP = "pytest_engineparity.engines"

# Used when the package metadata is not visible (a worker started under another interpreter
# with only PYTHONPATH pointing at this package).
BUILTIN = {
    "hf": "pytest_engineparity.engines.hf:HFEngine",
    "vllm": "pytest_engineparity.engines.vllm:VLLMEngine",
    "openai": "pytest_engineparity.engines.openai:OpenAIEngine",
    "trtllm": "pytest_engineparity.engines.trtllm:TRTLLMEngine",
    "vllm-serve": "pytest_engineparity.engines.vllm_serve:VLLMServeEngine",
    "trtllm-serve": "pytest_engineparity.engines.trtllm_serve:TRTLLMServeEngine",
}


def available_kinds() -> dict[str, str]:
    """kind -> "module:Class" for every registered adapter (entry points override builtins)."""
    kinds = dict(BUILTIN)
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata must not break the plugin
        eps = []
    for ep in eps:
        kinds[ep.name] = ep.value
    return kinds


def adapter_path(kind: str) -> str:
    """``"module:Class"`` of ``kind``: a registered kind, or (in an engine config table) a
    ``module:Class`` path itself, for an adapter that is not packaged with an entry point."""
    kinds = available_kinds()
    if kind not in kinds and ":" in kind and all(part.replace(".", "").replace("_", "").isalnum()
                                                 for part in kind.split(":", 1)):
        return kind
    if kind not in kinds:
        raise EngineSpecError(
            f"unknown engine kind {kind!r}; known kinds: {', '.join(sorted(kinds))}"
            f" (add one through the {ENTRY_POINT_GROUP!r} entry-point group)"
        )
    return kinds[kind]


def load_adapter(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise EngineSpecError(f"cannot load engine adapter {path!r}: {exc}") from exc


def adapter_class(kind: str) -> Any:
    return load_adapter(adapter_path(kind))


def capabilities_of(kind: str, spec: Any = None) -> Any:
    """The adapter's declared ``Capabilities`` (the defaults for an adapter that declares none)."""
    from .base import Capabilities

    cls = adapter_class(kind)
    fn = getattr(cls, "capabilities", None)
    if fn is None:
        return getattr(cls, "CAPABILITIES", None) or Capabilities()
    return fn(spec)


def load_client(spec: Any, info: Any) -> Any:
    """A client in the calling process that sends a given schedule to this engine's server
    (``generate_scheduled(requests, offsets, concurrency)`` and ``close()``), or None for an
    engine that has no server to load (in-process engines: they take one batch at a time).
    Asked of the adapter (its ``load_client`` classmethod), never decided on the kind name."""
    fn = getattr(adapter_class(spec.kind), "load_client", None)
    return None if fn is None else fn(spec, info)


def fingerprint_packages() -> list:
    """(label, distribution names) of every registered adapter's packages, first seen first."""
    out, seen = [], set()
    for kind in available_kinds():
        try:
            caps = capabilities_of(kind)
        except Exception:  # a broken third-party adapter must not break the fingerprint
            continue
        for label, names in caps.packages:
            if label not in seen:
                seen.add(label)
                out.append((label, tuple(names)))
    return out
