"""Parsing of ``listeners`` / ``advertised.listeners`` values.

A listener is ``NAME://host:port``; several are comma-separated. An IPv6 host is
written in brackets (``PLAINTEXT://[::1]:9092``). An empty host means every
interface. Port 0 asks for an ephemeral port; in advertised listeners it means
"the port the listener of that name actually bound".
"""

from __future__ import annotations

import re
from typing import NamedTuple

from kbroker.config.errors import ConfigError

_LISTENER = re.compile(
    r"^(?P<name>[A-Za-z0-9_]+)://(?:\[(?P<v6>[0-9A-Fa-f:.%]*)\]|(?P<host>[0-9A-Za-z\-%._]*)):(?P<port>[0-9]+)$"
)


class Listener(NamedTuple):
    """One parsed listener: upper-case ``name``, ``host`` ('' = all interfaces) and ``port``."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


def parse_listener_list(key: str, raw: list[str]) -> list[Listener]:
    """Parse the list items of ``key``; raise :class:`ConfigError` naming ``key`` on error."""
    listeners: list[Listener] = []
    for item in raw:
        match = _LISTENER.match(item.strip())
        if match is None:
            raise ConfigError(
                f"Invalid value {item} for configuration {key}: "
                "listener must be of the form NAME://host:port",
                key,
            )
        port = int(match["port"])
        if port > 65535:
            raise ConfigError(f"Invalid value {item} for configuration {key}: port must be 0..65535", key)
        host = match["v6"] if match["v6"] is not None else match["host"]
        listener = Listener(match["name"].upper(), host, port)
        if any(other.name == listener.name for other in listeners):
            raise ConfigError(
                f"Invalid value for configuration {key}: listener name {listener.name} is used more than once",
                key,
            )
        listeners.append(listener)
    return listeners


def parse_protocol_map(key: str, raw: list[str]) -> dict[str, str]:
    """Parse ``listener.security.protocol.map`` items (``NAME:PROTOCOL``)."""
    mapping: dict[str, str] = {}
    for item in raw:
        name, sep, protocol = item.partition(":")
        if not sep or not name.strip() or not protocol.strip():
            raise ConfigError(f"Invalid value {item} for configuration {key}: expected NAME:PROTOCOL", key)
        mapping[name.strip().upper()] = protocol.strip().upper()
    return mapping


def check_distinct_ports(key: str, listeners: list[Listener]) -> None:
    """Reject two listeners bound to the same host and (non-ephemeral) port."""
    seen: set[tuple[str, int]] = set()
    for listener in listeners:
        if listener.port == 0:
            continue
        where = (listener.host, listener.port)
        if where in seen:
            raise ConfigError(
                f"Invalid value for configuration {key}: each listener must have a different port "
                f"({listener.host}:{listener.port} is used twice)",
                key,
            )
        seen.add(where)


def parse_ip_overrides(raw: str | None) -> dict[str, int]:
    """``host:count,host:count`` (``max.connections.per.ip.overrides``) as a dict; raises ValueError."""
    out: dict[str, int] = {}
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, count = item.rpartition(":")
        host = host.strip().strip("[]")
        if not sep or not host or not count.strip().lstrip("-").isdigit() or int(count) < 0:
            raise ValueError(f"{item!r} is not of the form host:count with a count >= 0")
        out[host] = int(count)
    return out


def check_ip_overrides(value: str | None) -> str | None:
    """Validator of ``max.connections.per.ip.overrides``."""
    try:
        parse_ip_overrides(value)
    except ValueError as e:
        return str(e)
    return None
