"""The import graph of the first-party packages: no cycles, and imports run one way.

    trainer  <-  core  <-  {api, worker}  <-  cli
    client (httpx + pydantic + core.status)  <-  {cli, dashboard}

Every module is parsed with `ast` (nothing is imported), and every import counts: module level,
inside functions, under `if TYPE_CHECKING`, and `importlib.import_module("pkg.mod")` /
`__import__` with a literal name. An import inside a function still ties the two modules together,
so a cycle "broken" that way is a cycle here.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trainer", "core", "api", "worker", "client", "cli", "dashboard", "migrations",
            "benchmarks")

# Top-level package -> first-party packages it must not import (its own subpackages are fine).
# Nothing shipped imports the top-level benchmarks/ (they sit above everything).
FORBIDDEN = {
    "trainer": {"core", "api", "worker", "client", "cli", "dashboard", "benchmarks"},
    "core": {"api", "worker", "client", "cli", "dashboard", "benchmarks"},
    "api": {"worker", "client", "cli", "dashboard", "benchmarks"},
    "worker": {"api", "cli", "dashboard", "benchmarks"},
    "client": {"core", "api", "worker", "trainer", "cli", "dashboard", "benchmarks"},
    "cli": {"benchmarks"},
    "dashboard": set(PACKAGES) - {"dashboard", "client"},
}
# Single modules a forbidden package may still import: dependency-free by design (stdlib only).
SHARED = {"core.status"}

# Edges that are known and owned by pending work, each with the reason; empty this list as that
# work lands (the lead, after merging branch arch-core: the job domain moves to core/jobs and a core
# queue module sends tasks by name, so neither the API nor reconcile imports worker.tasks).
ALLOWED_EDGES: set[tuple[str, str]] = set()  # empty: keep it so


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The first-party module `name` loads: itself, or its nearest enclosing package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _literal_prefix(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value).rstrip(".")
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules that `module` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from a import b`: b may be a module (a.b) or a name defined in a.
            names += [f"{prefix}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                literal = _literal_prefix(node.args[0])
                if literal:
                    names.append(literal)
    found = {_resolve(name, modules) for name in names}
    return {target for target in found if target and target != module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module are import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_parser_sees_every_kind_of_import(tmp_path):
    """The checks below are only as good as `imports_of`: it must see function-level, relative
    and importlib imports."""
    modules = {"pkg": tmp_path, "pkg.a": tmp_path, "pkg.b": tmp_path, "pkg.c": tmp_path,
               "pkg.d": tmp_path, "other": tmp_path}
    source = tmp_path / "mod.py"
    source.write_text("import other\n"
                      "def f():\n    from . import a\n    from .b import name\n"
                      "    import importlib\n    importlib.import_module('pkg.c')\n"
                      "    __import__(f'pkg.d.{x}')\n")
    assert imports_of("pkg.mod", source, modules) == {"other", "pkg.a", "pkg.b", "pkg.c", "pkg.d"}
    components = strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(components) == [["a", "b", "c"], ["d"]]


def test_no_import_cycles(graph):
    pruned = {src: {dst for dst in targets if (src, dst) not in ALLOWED_EDGES}
              for src, targets in graph.items()}
    cycles = [c for c in strongly_connected(pruned) if len(c) > 1]
    assert not cycles, "import cycles (an import inside a function still counts):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_imports_run_one_way(graph):
    violations = []
    for src, targets in sorted(graph.items()):
        forbidden = FORBIDDEN.get(src.split(".")[0], set())
        for dst in sorted(targets):
            if dst.split(".")[0] in forbidden and dst not in SHARED and (src, dst) not in ALLOWED_EDGES:
                violations.append(f"{src} -> {dst}")
    assert not violations, "imports against the layer rule (docs/architecture.md):\n" + "\n".join(
        violations)


def test_allowed_edges_still_exist(graph):
    """An allow-listed edge that is gone must leave the list, so the list only ever shrinks."""
    stale = sorted(f"{src} -> {dst}" for src, dst in ALLOWED_EDGES if dst not in graph.get(src, ()))
    assert not stale, f"remove from ALLOWED_EDGES: {stale}"


def test_shared_modules_need_only_the_standard_library():
    for name in SHARED:
        path = ROOT / (name.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        assert roots <= set(sys.stdlib_module_names) | {"__future__"}, (name, roots)


@pytest.mark.parametrize("prefix", ["dashboard", "cli.rest"])
def test_api_users_reach_the_server_only_through_the_client(graph, prefix):
    """The dashboard and the REST commands of `basis` import the client and core.status only."""
    reached = defaultdict(set)
    for src, targets in graph.items():
        if src == prefix or src.startswith(prefix + "."):
            for dst in targets:
                reached[dst.split(".")[0]].add(dst)
    assert reached, f"no module {prefix}"
    assert set(reached) <= {"dashboard", "cli", "client", "core"} and reached["core"] <= SHARED
    assert reached["cli"] <= {"cli.errors"}
