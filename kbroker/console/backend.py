"""What the console reads and does, in-process.

Reads go straight to the broker's components through :class:`BrokerServices` (the protocol
handlers use): cheap, and nothing runs while nobody looks. Actions (create a topic, alter a
config, reset a group's offsets, produce a message) are Kafka requests served in-process by the
broker's own handlers, through :func:`kbroker.server.dispatch.dispatch`, in a session carrying
the console user's principal: the same validation, error codes and ACLs as from a client.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kbroker.codec import decode_response, encode_request
from kbroker.codec.apis import api_table
from kbroker.handlers import registry
from kbroker.handlers.api import BrokerServices, Session
from kbroker.security.model import ANONYMOUS
from kbroker.server.dispatch import dispatch
from kbroker.server.intercept import Interceptors


class ActionError(Exception):
    """An action the broker refused: ``code`` is Kafka's error code, ``message`` says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ConsoleSettings:
    """How the console is served."""

    host: str = "127.0.0.1"
    port: int = 0
    #: No actions: pages only (``console.read.only``).
    read_only: bool = False
    #: Ask for credentials (the broker's SASL users) before any page: set when a listener uses SASL.
    login_required: bool = False


class ConsoleBackend:
    """The broker as the console sees it."""

    def __init__(self, services: BrokerServices, interceptors: Interceptors, *, version: str,
                 started_at: float | None = None, extras: Mapping[str, Callable[[], Any]] | None = None) -> None:
        self.services = services
        #: The broker's interceptors: a live view installs a counter here while it is watched.
        self.interceptors = interceptors
        self.version = version
        #: ``time.time()`` at start (uptime).
        self.started_at = time.time() if started_at is None else started_at
        #: Named callables the Broker adds for what BrokerServices does not give (brokers list, ...).
        self.extras: dict[str, Callable[[], Any]] = dict(extras or {})
        self._correlation = itertools.count(1)
        self._sessions: dict[str, Session] = {}

    def session(self, principal: str = ANONYMOUS, host: str = "127.0.0.1") -> Session:
        """The in-process session for ``principal`` (one per principal; its requests are the console's)."""
        session = self._sessions.get(principal)
        if session is None:
            session = Session(listener="CONSOLE", client_host=host, client_port=0, principal=principal)
            session.last_client_id = "kbroker-console"
            self._sessions[principal] = session
        return session

    async def request(self, api_key: int, body: Mapping[str, Any], *, principal: str = ANONYMOUS,
                      version: int | None = None) -> Any:
        """Serve a Kafka request in-process as ``principal`` and return the decoded response body.

        ``version`` defaults to the newest the broker serves. The request goes through dispatch
        (not the interceptors: fault rules and the recorder are for clients' traffic).
        """
        handler = registry()[api_key]
        if version is None:
            version = max(v for v in handler.versions if v in api_table()[api_key].versions)
        cid = next(self._correlation)
        frame = encode_request(api_key, version, cid, body, client_id="kbroker-console")[4:]
        parts = await dispatch(self.services, self.session(principal), frame)
        if parts is None:
            return None
        data = b"".join(bytes(p) for p in parts)[4:]
        _, response = decode_response(api_key, version, data)
        return response
