"""Helpers shared by the Python-side scenario implementations."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any


class NotSupported(Exception):
    """The client does not offer this feature: the cell is n/a, not a failure."""


class CheckFailed(AssertionError):
    pass


def check(cond: object, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def topic_name(client: str, scenario: str) -> str:
    return f"compat-{client}-{scenario}-{uuid.uuid4().hex[:8]}".replace("_", "-")


def group_name(client: str, scenario: str) -> str:
    return f"compat-g-{client}-{scenario}-{uuid.uuid4().hex[:8]}"


def payloads(n: int, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}-{i:05d}".encode() for i in range(n)]


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``fn`` until it returns something truthy; raise CheckFailed on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out waiting for {what}")
        time.sleep(interval)


#: A value just under the default max.message.bytes (1048588) once batch overhead is added.
LARGE_SIZE = 1_000_000
#: A value over it: the broker must refuse the batch (MESSAGE_TOO_LARGE).
OVERSIZE = 1_100_000


def large_value(n: int) -> bytes:
    return os.urandom(n)
