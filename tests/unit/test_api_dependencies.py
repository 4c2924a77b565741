"""Every dependency of every API route is ``async``: FastAPI runs a plain ``def``
dependency in a worker thread (a thread hop per dependency per request, which on a list
request of the dashboard cost more than the dependency's own work)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

SERVICES = ("compute", "identity", "image", "network", "volume", "dashboard")


def _routers() -> Iterator[tuple[str, APIRouter]]:
    for service in SERVICES:
        package = "stratus.dashboard" if service == "dashboard" else f"stratus.{service}.api"
        root = importlib.import_module(package)
        for info in pkgutil.iter_modules(root.__path__, prefix=f"{package}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if isinstance(value, APIRouter):
                    yield f"{info.name}.{name}", value


def _sync_dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        call = sub.call
        if call is not None and not (inspect.iscoroutinefunction(call)
                                     or inspect.isasyncgenfunction(call)):
            yield call
        yield from _sync_dependencies(sub)


def test_no_route_has_a_dependency_that_runs_in_a_worker_thread() -> None:
    found: list[str] = []
    routes = 0
    for where, router in _routers():
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes += 1
                found += [f"{where} {route.path}: {getattr(call, '__qualname__', call)}"
                          for call in _sync_dependencies(route.dependant)]
    assert routes > 100  # the walk found the APIs' routes
    assert sorted(set(found)) == []
