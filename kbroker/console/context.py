"""What every console page module gets (:class:`Console`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from kbroker.console.backend import ConsoleBackend, ConsoleSettings

HERE = Path(__file__).resolve().parent


class Console:
    """What every page module gets: the backend, the settings and the templates."""

    def __init__(self, backend: ConsoleBackend, settings: ConsoleSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["read_only"] = settings.read_only
        self.templates.env.globals["version"] = backend.version

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        """``template`` rendered with ``context`` (and the request, the principal, the page's time)."""
        context.setdefault("principal", getattr(request.state, "principal", None))
        context.setdefault("rendered_at", time.strftime("%H:%M:%S"))
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)
