"""A group member and the one-shot waiters its blocked JoinGroup/SyncGroup calls sit on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

from kbroker.groups.errors import Errors
from kbroker.groups.timers import Timer

T = TypeVar("T")


class Waiter(Generic[T]):
    """A result delivered once to one waiting request."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._result: T | None = None

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def set(self, result: T) -> None:
        """Deliver ``result``; later calls are ignored."""
        if not self._event.is_set():
            self._result = result
            self._event.set()

    async def wait(self) -> T:
        """The delivered result, once there is one."""
        await self._event.wait()
        assert self._result is not None
        return self._result


@dataclass
class JoinGroupResult:
    """What a JoinGroup call answers."""

    error: Errors
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    skip_assignment: bool = False
    #: ``(member id, group instance id, metadata)``; only the leader gets them.
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@dataclass
class SyncGroupResult:
    """What a SyncGroup call answers."""

    error: Errors
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


Protocols = Sequence[tuple[str, bytes]]


def unique_protocols(protocols: Protocols) -> list[tuple[str, bytes]]:
    """Each protocol name once, the first occurrence winning (a member's protocols are a set in Kafka)."""
    seen: set[str] = set()
    out: list[tuple[str, bytes]] = []
    for name, metadata in protocols:
        if name not in seen:
            seen.add(name)
            out.append((name, bytes(metadata)))
    return out


@dataclass(eq=False)
class MemberMetadata:
    """One member of a classic group (Kafka's MemberMetadata)."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    #: ``(protocol name, metadata)`` in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    awaiting_join: Waiter[JoinGroupResult] | None = None
    awaiting_sync: Waiter[SyncGroupResult] | None = None
    #: Joined but has not yet been through a completed join barrier.
    is_new: bool = False
    session_timer: Timer | None = None

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str) -> bytes:
        """This member's metadata for ``protocol`` (empty if it does not support it)."""
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def matches(self, protocols: Protocols) -> bool:
        """Whether ``protocols`` are exactly this member's current ones, in order."""
        return [(n, bytes(m)) for n, m in protocols] == self.protocols

    def vote(self, candidates: set[str]) -> str:
        """This member's most preferred protocol among ``candidates``."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError("member supports none of the candidate protocols")

    def complete_join(self, result: JoinGroupResult) -> bool:
        """Answer a waiting JoinGroup; False if none was waiting."""
        waiter, self.awaiting_join = self.awaiting_join, None
        if waiter is None:
            return False
        waiter.set(result)
        return True

    def complete_sync(self, result: SyncGroupResult) -> bool:
        """Answer a waiting SyncGroup; False if none was waiting."""
        waiter, self.awaiting_sync = self.awaiting_sync, None
        if waiter is None:
            return False
        waiter.set(result)
        return True
