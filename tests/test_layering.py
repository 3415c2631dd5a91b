"""The import rules of docs/architecture.md, checked from the source:

- no import cycle among the project's modules (imports under
  ``if TYPE_CHECKING:`` do not count: they never run);
- ``coordinator`` never imports ``frontend`` (cluster logic knows no protocol);
- only ``coordinator.redis_client`` and ``coordinator.registry`` import redis;
- only the CLI imports the composition root, ``frontend.node``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("coordinator", "frontend")
REDIS_DOORS = {"coordinator.redis_client", "coordinator.registry"}
NODE_IMPORTERS = {"frontend.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(source: str, module: str) -> set[str]:
    """Every module ``source`` imports when it runs (top level or in functions)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def project_graph(root: Path = REPO) -> dict[str, set[str]]:
    modules = {
        _module_name(p): p
        for package in PACKAGES
        for p in (root / package).rglob("*.py")
        if "pb" not in p.relative_to(root).parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imports = runtime_imports(path.read_text(), name)
        graph[name] = {i for i in imports if i in modules and i != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


GRAPH = project_graph()


def test_no_import_cycles() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_type_checking_imports_do_not_count() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nelse:\n    import y\nimport z\n"
    assert runtime_imports(source, "m") == {"typing", "typing.TYPE_CHECKING", "y", "z"}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("coordinator")))
def test_coordinator_knows_no_frontend(module: str) -> None:
    assert not {i for i in GRAPH[module] if i.startswith("frontend")}, f"{module} imports the frontend"


def test_only_the_registry_talks_to_redis() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = _module_name(path)
            uses = {i for i in runtime_imports(path.read_text(), name) if i == "redis" or i.startswith("redis.")}
            if uses and name not in REDIS_DOORS:
                offenders[name] = sorted(uses)
    assert not offenders, f"only {sorted(REDIS_DOORS)} may import redis: {offenders}"


def test_only_the_cli_imports_the_composition_root() -> None:
    importers = {m for m, imports in GRAPH.items() if "frontend.node" in imports}
    assert importers <= NODE_IMPORTERS, f"frontend.node is imported by {sorted(importers - NODE_IMPORTERS)}"


def test_no_document_links_outside_the_repository() -> None:
    """A clone has nothing outside it: every relative link must resolve inside."""
    import re

    broken = []
    for doc in [*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("bench/*.md")]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_every_module_has_a_room_in_the_architecture_doc() -> None:
    """docs/architecture.md names every module (by its path, its file name in
    the rooms table, or its package: ``frontend/wire/``, ``frontend/statements/*``)."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py" or "/pb/" in rel or "__pycache__" in rel:
                continue
            parent = path.parent.relative_to(REPO).as_posix()
            names = (rel, f"`{path.name}`", f"{path.name}`", f"{parent}/`", f"{parent}/*", f"`{path.parent.name}/`")
            if not any(name in doc for name in names):
                missing.append(rel)
    assert not missing, f"modules without a room in docs/architecture.md: {missing}"
