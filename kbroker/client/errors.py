"""Errors the client raises: Kafka error codes by name, and connection failures."""

from __future__ import annotations

import json
from functools import cache

from kbroker.codec.schema import SCHEMA_DIR

NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
BROKER_NOT_AVAILABLE = 8
REPLICA_NOT_AVAILABLE = 9
NETWORK_EXCEPTION = 13
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_REQUEST = 42
INVALID_PRODUCER_EPOCH = 47
TRANSACTION_COORDINATOR_FENCED = 52
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
TRANSACTIONAL_ID_NOT_FOUND = 105

#: Errors worth retrying after a short wait (the coordinator or leader is moving).
RETRIABLE = frozenset({
    LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
})


@cache
def _table() -> dict[int, tuple[str, str]]:
    entries = json.loads((SCHEMA_DIR / "errors.json").read_text())
    return {int(e["code"]): (str(e["name"]), str(e.get("message") or "")) for e in entries}


def error_name(code: int) -> str:
    """The protocol name of an error code, e.g. ``UNKNOWN_TOPIC_OR_PARTITION``."""
    entry = _table().get(code)
    return entry[0] if entry else f"UNKNOWN_ERROR_CODE_{code}"


def error_message(code: int) -> str:
    """Kafka's default description of an error code."""
    entry = _table().get(code)
    return entry[1] if entry else "An unknown error code."


class ClientError(Exception):
    """Anything the client reports to a user: it has a Kafka error ``name`` and a message."""

    name = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {' '.join(self.message.split())}"  # always one line


class KafkaError(ClientError):
    """The broker answered with a non-zero error code."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or error_message(code))
        self.code = code
        self.name = error_name(code)

    @property
    def retriable(self) -> bool:
        return self.code in RETRIABLE


class BrokerConnectionError(ClientError):
    """The broker could not be reached, or the connection broke mid-request."""

    name = "NETWORK_EXCEPTION"


class ProtocolError(ClientError):
    """A request could not be encoded, or the peer's answer could not be decoded."""

    name = "INVALID_REQUEST"


def check(code: int, message: str | None = None) -> None:
    """Raise :class:`KafkaError` unless ``code`` is 0."""
    if code:
        raise KafkaError(code, message)
