"""Facts read inside an engine's worker process, before any engine starts (the ``probe`` op).

Runs under the engine's own interpreter, where only the standard library and this package may be
importable: no numpy, scipy or engine imports here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROBES", "run_probe", "package_versions_here"]


import ast
from importlib import util as _import_util
from pathlib import Path
from .fingerprint import package_versions


def _module_version(module):
    # __version__ of a module without a distribution record, read from its version.py or
    # __init__.py literal (the module is located, never imported)
    try:
        spec = _import_util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        for name in ("version.py", "__init__.py"):
            try:
                tree = ast.parse((Path(loc) / name).read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            for node in tree.body:
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__version__"
                                                        for t in node.targets):
                    if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                        return node.value.value
    return None


def package_versions_here() -> dict:
    out = package_versions()
    for key in ("tensorrt_llm", "tensorrt"):
        if out.get(key) is None:
            v = _module_version(key)
            if v is not None:
                out[key] = v
                out[key + "_distribution"] = "module " + key + " (no distribution metadata)"
    return out


PROBES = {"package_versions": package_versions_here}


def run_probe(what: str) -> Any:
    if what not in PROBES:
        raise ValueError(f"unknown probe {what!r}; probes: {', '.join(PROBES)}")
    return PROBES[what]()
