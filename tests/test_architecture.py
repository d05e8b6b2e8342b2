"""The layers, checked on the import graph (every import, module-level or inside a function).

0 foundations: errors, types, sla, checks.verdicts, runtime.files, engines.base
1 engines/ (adapters, registry, enginedir), runtime.placement (pure checks on specs)
2 runtime/ (worker, client, fingerprint, gpumem), config, models, prompts, strategies
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


def _docstrings(tree: ast.AST) -> set:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            out.add(id(node.body[0].value))
    return out


def kind_names_in(tree: ast.AST, kinds: set) -> list[tuple[int, str]]:
    """(line, text) of every string constant that names a kind (or starts ``kind:``), docstrings aside."""
    docs = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and (node.value in kinds or any(node.value.startswith(k + ":") for k in kinds))]


def test_no_kind_name_outside_engines() -> None:
    """Everything about an engine kind lives in its adapter: no module outside engines/ names a
    registered kind in code (any string constant that is not a docstring: comparisons, tuples,
    dict keys, ``startswith`` arguments, ``kind:target`` literals)."""
    from pytest_engineparity.engines.registry import available_kinds

    kinds = set(available_kinds())
    assert {"hf", "vllm", "openai", "trtllm", "vllm-serve", "trtllm-serve"} <= kinds
    bad = []
    for mod, path in modules().items():
        if mod.startswith("engines"):
            continue
        for line, v in kind_names_in(ast.parse(path.read_text(encoding="utf-8")), kinds):
            bad.append(f"{mod}:{line} names the engine kind {v!r}")
    assert not bad, "\n".join(bad)


def test_the_kind_name_check_catches_the_forms_it_claims() -> None:
    """The check above, on code that names kinds in the ways it must catch (it can fail)."""
    src = ('if kind in ("hf", "vllm"): pass\nx = {"trtllm-serve": 1}\n'
           'y = name.startswith("openai")\nz = "vllm-serve:/m"\n"""a docstring naming hf"""\n')
    found = [v for _, v in kind_names_in(ast.parse(src), {"hf", "vllm", "openai", "trtllm-serve", "vllm-serve"})]
    assert sorted(found) == ["hf", "openai", "trtllm-serve", "vllm", "vllm-serve:/m"]


def test_builtin_adapters_match_the_entry_points() -> None:
    """A built-in adapter is registered twice: its entry point (pyproject.toml) and, for workers
    under another interpreter that see no package metadata, ``engines/registry.py``'s BUILTIN.
    The two must agree."""
    import tomllib

    from pytest_engineparity.engines.registry import BUILTIN, ENTRY_POINT_GROUP

    pyproject = tomllib.loads((PKG.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["entry-points"][ENTRY_POINT_GROUP] == BUILTIN


def test_imports_in_every_form_are_seen() -> None:
    """``import pytest_engineparity.x`` counts as an import of x, like ``from ... import``."""
    mods = modules()
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("pytest_engineparity."):
                        dep = a.name[len("pytest_engineparity."):]
                        assert layer(dep) <= layer(mod), f"{mod} imports {dep} (a higher layer)"
