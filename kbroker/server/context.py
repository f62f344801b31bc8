"""What a handler receives alongside the decoded request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kbroker.codec import Request
from kbroker.server.session import Session

if TYPE_CHECKING:
    from kbroker.broker import Broker


@dataclass(frozen=True)
class RequestContext:
    """The broker, the connection's session and the request being served."""

    broker: Broker
    session: Session
    request: Request

    @property
    def version(self) -> int:
        return self.request.api_version

    @property
    def client_id(self) -> str | None:
        return self.request.header.client_id
