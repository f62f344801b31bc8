"""Per-connection state that outlives a single request."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

_ids = itertools.count(1)


@dataclass
class Session:
    """What the broker knows about one client connection.

    ``principal`` stays ``User:ANONYMOUS`` on PLAINTEXT listeners; SASL will set it
    (and ACL checks will read it) once authentication is added.
    """

    listener: str
    client_host: str
    client_port: int
    connection_id: int = field(default_factory=lambda: next(_ids))
    principal: str = "User:ANONYMOUS"
    authenticated: bool = True
    client_software_name: str | None = None
    client_software_version: str | None = None
    last_client_id: str | None = None
