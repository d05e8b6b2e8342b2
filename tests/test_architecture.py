"""The layers, checked on the import graph (every import, module-level or inside a function).

0 foundations: errors, types, sla, checks.verdicts, runtime.files, engines.base
1 engines/ (adapters, registry, enginedir), runtime.placement (pure checks on specs)
2 runtime/ (worker, client, placement, fingerprint), config, models, prompts, strategies
3 checks/ (families over checks.context, compare, stats, semantic)
4 session, report/
5 pair, cli
6 plugin
A module may import its own layer or lower ones, never a higher one; the graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "pytest_engineparity"

LAYER0 = {"errors", "types", "sla", "checks.verdicts", "runtime.files", "engines.base", "__init__"}


def layer(mod: str) -> int:
    if mod in LAYER0:
        return 0
    if mod.startswith("engines") or mod == "runtime.placement":  # placement: pure checks on specs
        return 1
    if mod.startswith("runtime") or mod in ("config", "models", "prompts", "strategies"):
        return 2
    if mod.startswith("checks"):
        return 3
    if mod in ("session",) or mod.startswith("report"):
        return 4
    if mod in ("pair", "cli"):
        return 5
    if mod == "plugin":
        return 6
    raise AssertionError(f"module {mod!r} has no layer: add it to tests/test_architecture.py")


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports_of(mod: str, path: Path, known: set) -> set:
    pkg = mod.split(".")[:-1] if path.name != "__init__.py" else mod.split(".")
    if mod == "__init__":
        pkg = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else list(pkg)
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("pytest_engineparity"):
                target = node.module[len("pytest_engineparity"):].lstrip(".")
            else:
                continue
            names = [target] if target else []
            names += [f"{target}.{a.name}" if target else a.name for a in node.names]
            for t in names:
                if t in known and t != mod:
                    found.add(t)
    return found


def test_no_module_imports_a_higher_layer() -> None:
    mods = modules()
    bad = []
    for mod, path in mods.items():
        for dep in imports_of(mod, path, set(mods)):
            if layer(dep) > layer(mod) and not (mod == "__init__"):
                bad.append(f"{mod} (layer {layer(mod)}) imports {dep} (layer {layer(dep)})")
    assert not bad, "\n".join(sorted(bad))


def test_import_graph_has_no_cycle() -> None:
    mods = modules()
    graph = {m: imports_of(m, p, set(mods)) - {"__init__"} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list) -> None:
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_no_kind_name_outside_engines() -> None:
    """Everything about an engine kind lives in its adapter: no module outside engines/ compares
    a kind name."""
    kinds = ("hf", "vllm", "openai", "trtllm")
    bad = []
    for mod, path in modules().items():
        if mod.startswith("engines"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in kinds:
                        bad.append(f"{mod}:{node.lineno} compares with {side.value!r}")
    assert not bad, "\n".join(bad)
