"""The dashboard's unit: ``dashboard`` at ``/dashboard``, a client of the public APIs."""

from __future__ import annotations

from starlette.types import ASGIApp

from stratus.core.web.lazy import LazyApp
from stratus.stack import Stack, Unit


async def build_dashboard(stack: Stack) -> ASGIApp:
    from stratus.dashboard.sessions import store_for

    settings = stack.settings
    identity_url = settings.auth.identity_url or f"{settings.base_url}/identity/v3"
    stack.chose("dashboard sessions", settings.dashboard.session_store)
    store = store_for(settings.dashboard)
    stack.exits.push_async_callback(store.aclose)
    http = stack.http_client()

    def build() -> ASGIApp:
        from stratus.dashboard.app import create_dashboard_app

        return create_dashboard_app(settings.dashboard, http, identity_url,
                                    secure=settings.base_url.startswith("https:"), store=store)

    return LazyApp(build)


UNITS = (
    # No catalog entry: people reach it with a browser.
    Unit("dashboard", "/dashboard", build_dashboard),
)
