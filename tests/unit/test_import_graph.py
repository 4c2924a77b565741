"""The import graph of ``stratus/``, read from the source with ``ast``: every ``import`` and
``from ... import`` counts, wherever it stands (module level, under ``if TYPE_CHECKING:``,
inside a function).

(a) No import cycle among the modules of one service package (``stratus.identity``,
``.compute``, ``.image``, ``.network``, ``.volume``) nor of ``stratus.core``. Importing
``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as imported too.

(b) No service imports another service's package, and ``stratus.core`` imports no service.
The composition roots, which wire the services together, may: ``stratus/units.py``,
``stratus/stack.py``, ``stratus/cli`` and ``stratus/schemas.py``. Core imports none of them,
and a service only from its ``units`` module (its unit builders use ``stratus.stack``'s
``Stack``); elsewhere that would reach the other services through the back door.

(c) The HTTP layer stays thin: no module under a service's ``api/`` imports SQLAlchemy or
its service's ORM ``models``; handlers ask the domain parts, which own the queries.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "compute", "image", "network", "volume", "dashboard")
PACKAGES = (*SERVICES, "core")
COMPOSITION_ROOTS = ("stratus.units", "stratus.stack", "stratus.cli", "stratus.schemas")


def _module_name(path: Path) -> tuple[str, bool]:
    """(dotted name, is a package ``__init__``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _modules() -> dict[str, Path]:
    return {_module_name(path)[0]: path for path in sorted((ROOT / "stratus").rglob("*.py"))}


def _imported(path: Path, known: set[str]) -> Iterator[str]:
    name, is_package = _module_name(path)
    return _imports_of(path.read_text(), name, is_package, known)


def _imports_of(source_text: str, name: str, is_package: bool,
                known: set[str]) -> Iterator[str]:
    """The stratus modules module ``name`` imports (each name resolved to the module it is)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source_text)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from a import b``: the module a.b when there is one, else a's attribute b.
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known
                       else source for alias in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("stratus"):
                continue
            # Running ``a.b.c`` runs each package above it first, except the packages above
            # the importing module itself, which ran before it.
            parts = target.split(".")
            for end in range(2, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if prefix in known and prefix != name and not name.startswith(f"{prefix}."):
                    yield prefix


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: set(_imported(path, known)) for name, path in modules.items()}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return component


def cycles_within_packages() -> list[str]:
    graph = _graph()
    problems = []
    for package in PACKAGES:
        inside = {m: {t for t in targets if _package(t) == package}
                  for m, targets in graph.items() if _package(m) == package}
        for component in _cycles(inside):
            problems.append(f"stratus.{package}: " + " -> ".join(_cycle_path(inside,
                                                                               component)))
    return problems


def _is_root(module: str) -> bool:
    return any(module == root or module.startswith(f"{root}.") for root in COMPOSITION_ROOTS)


def imports_across_services() -> list[str]:
    problems = []
    for module, targets in sorted(_graph().items()):
        if _is_root(module):
            continue
        own = _package(module)
        if own is None:
            continue
        for target in sorted(targets):
            if _is_root(target):
                if own == "core" or module != f"stratus.{own}.units":
                    problems.append(f"{module} imports the composition root {target}")
                continue
            other = _package(target)
            if other is None or other == own or other == "core":
                continue
            problems.append(f"{module} imports {target}")
    return problems


SAMPLE = """
from typing import TYPE_CHECKING
from stratus.x import a
from . import b
from .c import thing

if TYPE_CHECKING:
    from stratus.y.z import Z

def later():
    import stratus.w
"""


def test_the_graph_is_read() -> None:
    known = {"stratus", "stratus.x", "stratus.x.a", "stratus.p", "stratus.p.b", "stratus.p.c",
             "stratus.y", "stratus.y.z", "stratus.w"}
    # Submodules imported by ``from``, relative imports, the packages above each, and the
    # imports under ``if TYPE_CHECKING:`` and inside a function all count.
    assert set(_imports_of(SAMPLE, "stratus.p.m", False, known)) == {
        "stratus.x", "stratus.x.a", "stratus.p.b", "stratus.p.c", "stratus.y", "stratus.y.z",
        "stratus.w"}
    assert "stratus.core.bus" in _graph()["stratus.compute.rpcapi"]
    assert _cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle_inside_a_package() -> None:
    assert cycles_within_packages() == []


def test_no_service_imports_another_and_core_imports_none() -> None:
    assert imports_across_services() == []


def api_modules_touching_the_database() -> list[str]:
    """``module → import`` for each ``*/api/`` module importing SQLAlchemy or ``models``."""
    found = []
    for name, path in _modules().items():
        if ".api." not in f"{name}." or name.split(".")[1] not in SERVICES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                sources = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                sources = [node.module or ""]
            else:
                continue
            found += [f"{name} → {source}" for source in sources
                      if source.split(".")[0] == "sqlalchemy" or source.endswith(".models")]
    return found


def test_no_api_module_imports_sqlalchemy_or_models() -> None:
    assert api_modules_touching_the_database() == []
