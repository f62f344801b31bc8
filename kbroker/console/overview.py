"""Console pages: overview."""

from __future__ import annotations

from starlette.routing import BaseRoute

from kbroker.console.context import Console


def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    return []
