"""The layers hold: every import (module level or inside a function) points down or sideways within a layer,
no module-level import cycle exists, only ``engine.commands`` imports click, and ``indexes`` imports only
core and itself. Checked on the source with ``ast``, so it stays true as code is added."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Layer of each package prefix, lowest first. A module may import its own layer or any lower one.
LAYERS: list[tuple[str, int]] = [
    ("engine.core", 0),
    ("engine.io", 1),
    ("engine.models", 2),
    ("indexes", 3),
    ("engine.queries", 4),
    ("engine.jobs", 5),
    ("engine.api", 6),
    ("engine.commands", 7),
    ("engine.__main__", 7),
    ("engine", 6),  # the package's public API (engine/__init__.py) sits with engine.api
]
LAYER_NAMES = {0: "core", 1: "io", 2: "models", 3: "indexes", 4: "queries", 5: "jobs", 6: "api", 7: "commands"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("engine", "indexes"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if "data" in parts:  # data build scripts shipped with the package are not part of the engine
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} is in no layer")


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for each engine / indexes / click import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if path.name == "__init__.py" else 0)]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
            # ``from pkg import submodule`` imports the submodule
            names += [f"{names[0]}.{a.name}" for a in node.names if f"{names[0]}.{a.name}" in MODULES]
        for name in names:
            found.append((name, node.lineno, id(node) in top or _in_type_checking(tree, node)))
    return found


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test) \
                and any(n is node for n in ast.walk(stmt)):
            return True
    return False


def _resolve(name: str) -> str | None:
    """The engine / indexes module an import names (longest known prefix), or None for third-party."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def test_every_import_points_down() -> None:
    bad = []
    for module, path in MODULES.items():
        for name, line, _ in _imports(path, module):
            target = _resolve(name)
            if target is None or (target == "engine" and module != "engine"):
                continue
            if layer_of(target) > layer_of(module):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {LAYER_NAMES[layer_of(module)]} module {module} "
                           f"imports {target} ({LAYER_NAMES[layer_of(target)]})")
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


def test_indexes_import_only_core_and_themselves() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line}: {name}" for m, p in MODULES.items() if m.startswith("indexes")
           for name, line, _ in _imports(p, m)
           if (t := _resolve(name)) is not None and not (t.startswith("indexes") or t.startswith("engine.core"))]
    assert not bad, "indexes/ imports engine layers above core:\n" + "\n".join(bad)


def test_only_commands_import_click() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line}" for m, p in MODULES.items() if not m.startswith("engine.commands")
           for name, line, _ in _imports(p, m) if name == "click" or name.startswith("click.")]
    assert not bad, "click imported outside engine.commands:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _, _ in _imports(path, module):
            target = _resolve(name)
            if target is not None and target != module:
                # a package's __init__ importing its own submodules is how packages re-export: not a cycle
                graph[module].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("layer", ["engine.core", "engine.io"])
def test_low_layers_have_no_heavy_imports(layer: str) -> None:
    heavy = ("torch", "rdkit", "faiss", "lancedb", "torch_geometric", "ray", "matplotlib")
    bad = [f"{p.relative_to(ROOT)}:{line}: {name}" for m, p in MODULES.items() if m.startswith(layer)
           for name, line, _ in _imports(p, m) if name.split(".")[0] in heavy]
    assert not bad, f"{layer} imports heavy packages:\n" + "\n".join(bad)
