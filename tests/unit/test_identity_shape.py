"""Identity keeps the service shape: no import cycle, no back-reference to the facade, and
an ``api/`` that reaches the database only through the repositories."""

from __future__ import annotations

import ast
from pathlib import Path

import stratus.identity

ROOT = Path(stratus.identity.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(ROOT.parent.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module, known: set[str] | None = None) -> set[str]:
    """Every module imported anywhere in the file, TYPE_CHECKING blocks and functions too.

    ``from package import module`` counts as importing the module, not the package."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            modules = subs & (known or set())
            found.update(modules)
            if modules != subs:
                found.add(node.module)
    return found


def test_no_import_cycle_inside_identity() -> None:
    modules = _modules()
    graph = {name: {m for m in _imports(tree, set(modules)) if m in modules and m != name}
             for name, tree in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), list(graph[start])
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(graph[current])
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert cycles == []


def test_repositories_do_not_import_the_facade() -> None:
    for name, tree in _modules().items():
        # units.py builds the runtime: a composition root like api/, not a repository.
        if name.startswith("stratus.identity.api") or name in (
                "stratus.identity.service", "stratus.identity.bootstrap",
                "stratus.identity.units"):
            continue
        assert "stratus.identity.service" not in _imports(tree), name


def test_api_does_not_touch_the_orm() -> None:
    for name, tree in _modules().items():
        if not name.startswith("stratus.identity.api"):
            continue
        imported = _imports(tree)
        assert not any(m.startswith("sqlalchemy") for m in imported), name
        assert "stratus.identity.models" not in imported, name
