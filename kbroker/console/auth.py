"""Who is looking: the console's login, when a listener uses SASL.

The password is checked by the broker's own SASL verification (the PLAIN users of the
listeners' JAAS configs, the SCRAM credentials of the credential store): the console keeps no
user store of its own. A login gives a session cookie signed with HMAC-SHA256 under a key drawn
at random per process (a restart logs everybody out). A middleware puts the principal on
``request.state.principal`` (``User:ANONYMOUS`` when no login is required); pages and actions
are authorised as that principal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from kbroker.config import BrokerConfig
from kbroker.console.context import Console
from kbroker.security.model import ANONYMOUS, AclOperation, ResourceType
from kbroker.security.scram import CredentialStore, ScramCredential

log = logging.getLogger(__name__)

COOKIE = "kbroker_console"
#: How long a login lasts.
SESSION_S = 12 * 3600
#: Paths served without a login (the login page itself and the static files it uses).
_OPEN = ("/login", "/static/")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


#: Largest form body read (console forms are small: a produced test message is the biggest).
MAX_FORM_BYTES = 1 << 20


class FormError(Exception):
    """A form body that cannot be read: ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (what HTML forms and htmx
    send), the last value of a repeated field winning; :class:`FormError` for another type or
    a body over :data:`MAX_FORM_BYTES`. Parsed here, without python-multipart."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise FormError(f"expected a form (application/x-www-form-urlencoded), not {ctype or 'no content type'}", 415)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"form body over {MAX_FORM_BYTES} bytes", 413)
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}


def principal_of(request: Request) -> str:
    """The principal the request is served as."""
    return str(getattr(request.state, "principal", ANONYMOUS))


def allowed(console: Console, request: Request, operation: AclOperation, resource_type: ResourceType,
            name: str) -> bool:
    """Whether the request's principal may do ``operation`` on the resource (always, without an authorizer)."""
    authorizer = console.backend.services.authorizer
    if authorizer is None:
        return True
    host = request.client.host if request.client else "127.0.0.1"
    return authorizer.authorize(principal_of(request), host, operation, resource_type, name)


def sasl_listeners(config: BrokerConfig) -> list[str]:
    """The listeners whose security protocol is SASL_PLAINTEXT or SASL_SSL."""
    return [lst.name for lst in config.listeners if config.security_protocol(lst.name).startswith("SASL_")]


def check_password(config: BrokerConfig, credentials: CredentialStore, user: str, password: str) -> bool:
    """Whether ``password`` is ``user``'s for a SASL mechanism some listener enables: PLAIN
    through the listener's own PLAIN server (its JAAS users), SCRAM by deriving the stored key
    from the password with the credential's salt and iterations, as a SCRAM exchange proves."""
    from kbroker.security.sasl import plain
    from kbroker.security.sasl.base import SaslFailure
    from kbroker.security.sasl.mechanisms import enabled_mechanisms, mechanism_factories

    if not user or not password:
        return False
    for listener in sasl_listeners(config):
        mechanisms = enabled_mechanisms(config, listener)
        if plain.MECHANISM in mechanisms:
            factory = mechanism_factories(config, listener, extra={m: _never for m in mechanisms
                                                                   if m != plain.MECHANISM})[plain.MECHANISM]
            try:
                factory().evaluate(b"\0" + user.encode() + b"\0" + password.encode())
                return True
            except SaslFailure:
                pass
        for mech in (m for m in mechanisms if m.startswith("SCRAM-")):
            credential = credentials.lookup(user, mech)
            if credential is None:
                continue
            derived = ScramCredential.from_password(mech, password, credential.iterations, credential.salt)
            if hmac.compare_digest(derived.stored_key, credential.stored_key):
                return True
    return False


def _never() -> Any:  # pragma: no cover - stands in for mechanisms the PLAIN check does not build
    raise RuntimeError("not a PLAIN exchange")


class Sessions:
    """Signed session cookies: ``<user b64>.<expiry>.<hmac>`` under a per-process random key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, now: float | None = None) -> str:
        """A cookie value for ``user``, valid for :data:`SESSION_S`."""
        expiry = int((time.time() if now is None else now) + SESSION_S)
        payload = f"{base64.urlsafe_b64encode(user.encode()).decode()}.{expiry}"
        return f"{payload}.{self._mac(payload)}"

    def user(self, cookie: str | None, now: float | None = None) -> str | None:
        """The user of a valid, unexpired cookie; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        encoded, expiry, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{encoded}.{expiry}")):
            return None
        try:
            if int(expiry) < (time.time() if now is None else now):
                return None
            return base64.urlsafe_b64decode(encoded.encode()).decode()
        except ValueError:
            return None


_sessions: weakref.WeakKeyDictionary[Console, Sessions] = weakref.WeakKeyDictionary()


def sessions_of(console: Console) -> Sessions:
    """The console's session signer (one key per console, drawn at first use)."""
    found = _sessions.get(console)
    if found is None:
        found = _sessions[console] = Sessions()
    return found


class AuthMiddleware:
    """Sets ``request.state.principal``; when a login is required, sends anyone without a valid
    session to ``/login`` (pages) or answers 401 (htmx fragments, event streams, actions)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.console.settings.login_required:
            state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        user = sessions_of(self.console).user(request.cookies.get(COOKIE))
        path = scope.get("path", "")
        if user is not None:
            state["principal"] = f"User:{user}"
        elif path.startswith(_OPEN):
            state["principal"] = ANONYMOUS
        else:
            response: Response
            if request.method == "GET" and "hx-request" not in request.headers \
                    and "text/event-stream" not in request.headers.get("accept", ""):
                target = path + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
                response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            else:
                response = Response("Log in first.", status_code=401, media_type="text/plain")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def middleware(console: Console) -> list[Middleware]:
    """The console's middleware (for :class:`kbroker.server.http.HttpEndpoint`)."""
    return [Middleware(AuthMiddleware, console=console)]


def _safe_next(value: str | None) -> str:
    # Only a path of this site: never an absolute URL elsewhere (an open redirect).
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def routes(console: Console) -> list[BaseRoute]:
    """``/login`` and ``/logout`` (only when a login is required)."""
    if not console.settings.login_required:
        return []

    async def login_page(request: Request) -> Response:
        return console.render(request, "login.html", next=_safe_next(request.query_params.get("next")),
                              failed=False)

    async def login(request: Request) -> Response:
        try:
            form = await form_fields(request)
        except FormError as e:
            return Response(str(e), status_code=e.status, media_type="text/plain")
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        services = console.backend.services
        if not check_password(services.config, services.credentials, user, password):
            log.info("console login refused for %r", user)
            # As a failed SASL login: answered only after connection.failed.authentication.delay.ms,
            # which slows down guessing.
            await anyio.sleep(int(services.config.get("connection.failed.authentication.delay.ms") or 0) / 1000)
            return console.render(request, "login.html", status_code=401, next=target, failed=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, sessions_of(console).issue(user), max_age=SESSION_S, httponly=True,
                            samesite="strict", path="/")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return [Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["GET", "POST"])]
