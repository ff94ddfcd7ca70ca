"""The import graph of the installed packages (edge_emo, firmware_bridge), read from the source with ast:
no cycles, and the device path never reaches torch or training code, not even through a lazy import inside a
function. Every import statement counts, wherever it is (a cycle through a function-level import is still a
cycle: it only waits for the first call)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge_emo", "firmware_bridge")
DEVICE_PATH = ("edge_emo.features", "edge_emo.runtime", "edge_emo.personalize", "firmware_bridge")
TRAINING = ("torch", "edge_emo.train", "edge_emo.model", "edge_emo.export")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (ours by module name; others by their top-level name)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:  # `from pkg import module` imports the module
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t if t in modules else t.split(".")[0] for t in targets} - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules along it, or [] (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        stack.append(module)
        for nxt in sorted(graph.get(module, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt in graph and not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if not state.get(module):
            found = visit(module)
            if found:
                return found
    return []


def _reach(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module reachable from `start`, each with the module that imports it (to print the path)."""
    seen = {start: ""}
    todo = [start]
    while todo:
        module = todo.pop()
        for nxt in graph.get(module, ()):
            if nxt not in seen:
                seen[nxt] = module
                todo.append(nxt)
    return seen


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "edge_emo.runtime.bundle" in graph["edge_emo.runtime.recognizer"]
    assert "torch" in graph["edge_emo.model"]
    assert "edge_emo.features.spec" in graph["edge_emo.features"]  # relative or absolute, resolved


def test_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_device_path_never_reaches_training_code() -> None:
    graph = import_graph()
    for module in graph:
        if not any(_within(module, d) for d in DEVICE_PATH):
            continue
        reached = _reach(graph, module)
        for target in reached:
            if any(_within(target, t) for t in TRAINING):
                path = [target]
                while reached[path[-1]]:
                    path.append(reached[path[-1]])
                raise AssertionError(f"{module} reaches training code: {' <- '.join(path)}")
