"""The console's routes: one module per group of pages, each exposing ``routes(console)``."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from kbroker.console import admin_pages, auth, groups, messages, overview, topics
from kbroker.console.context import HERE, Console


def build_routes(console: Console) -> list[BaseRoute]:
    """Every route of the console."""
    routes: list[BaseRoute] = [Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    for module in (auth, overview, topics, messages, groups, admin_pages):
        routes += module.routes(console)
    return routes


def build_middleware(console: Console) -> list[Middleware]:
    """The middleware wrapping every route (outermost first): the principal of each request,
    and the login when one is required."""
    return auth.middleware(console)
