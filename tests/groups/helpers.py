"""Driving a GroupCoordinator directly, on a ManualClock with an in-memory offsets log."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from kbroker.clock import ManualClock
from kbroker.groups import GroupConfig, GroupCoordinator, GroupMetadata, JoinGroupResult, JoinRequest
from kbroker.groups.storage import MemoryOffsetsLog

CONFIG = GroupConfig(min_session_timeout_ms=1000, initial_rebalance_delay_ms=0)


def subscription(*topics: str, user_data: bytes | None = None) -> bytes:
    """A ConsumerProtocolSubscription v0."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    out += struct.pack(">i", -1) if user_data is None else struct.pack(">i", len(user_data)) + user_data
    return out


class Harness:
    """A started coordinator plus helpers that run calls as concurrent tasks."""

    def __init__(self, coord: GroupCoordinator, clock: ManualClock, log: MemoryOffsetsLog, tg: TaskGroup) -> None:
        self.coord = coord
        self.clock = clock
        self.log = log
        self.tg = tg

    def group(self, group_id: str = "g") -> GroupMetadata:
        """The cached group, which must exist."""
        group = self.coord.manager.get(group_id)
        assert group is not None, group_id
        return group

    async def settle(self) -> None:
        """Let every runnable task run to its next wait, firing due timers in between.

        (anyio.wait_all_tasks_blocked sleeps 0.1 s whenever a task is runnable.)
        """
        for _ in range(4):
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            self.coord.timers.run_due()

    async def advance(self, ms: int) -> None:
        """Move the clock, fire due timers and let woken tasks run."""
        self.clock.advance(ms)
        await self.settle()

    def start_join(self, group: str, member_id: str = "", *, protocols: Sequence[tuple[str, bytes]] | None = None,
                   instance_id: str | None = None, session_ms: int = 10_000, rebalance_ms: int = 30_000,
                   protocol_type: str = "consumer", version: int = 5, client_id: str = "client") -> dict[str, Any]:
        """Send a JoinGroup as a background task; the result lands in the returned dict's ``result``."""
        box: dict[str, Any] = {}
        req = JoinRequest(group, member_id, session_ms, rebalance_ms, protocol_type,
                          protocols if protocols is not None else [("range", subscription("t"))],
                          instance_id, client_id, "/127.0.0.1", require_known_member_id=version >= 4,
                          supports_skip_assignment=version >= 9)

        async def run() -> None:
            box["result"] = await self.coord.join_group(req)

        self.tg.start_soon(run)
        return box

    async def join(self, group: str, member_id: str = "", **kw: Any) -> JoinGroupResult:
        box = self.start_join(group, member_id, **kw)
        await self.settle()
        return box["result"]  # type: ignore[no-any-return]

    def start_sync(self, group: str, generation: int, member_id: str, assignments: dict[str, bytes] | None = None,
                   instance_id: str | None = None) -> dict[str, Any]:
        box: dict[str, Any] = {}

        async def run() -> None:
            box["result"] = await self.coord.sync_group(group, generation, member_id, instance_id, None, None,
                                                        assignments or {})

        self.tg.start_soon(run)
        return box

    async def join_new(self, group: str, **kw: Any) -> JoinGroupResult:
        """A v4+ first join: MEMBER_ID_REQUIRED, then the real join (not awaited to completion)."""
        first = await self.join(group, **kw)
        assert first.error == 79
        return first


@asynccontextmanager
async def coordinator(config: GroupConfig = CONFIG, log: MemoryOffsetsLog | None = None,
                      clock: ManualClock | None = None) -> AsyncIterator[Harness]:
    clock = clock or ManualClock()
    log = log if log is not None else MemoryOffsetsLog(5)
    coord = GroupCoordinator(config, clock, log)
    async with anyio.create_task_group() as tg:
        await coord.start(tg)
        yield Harness(coord, clock, log, tg)
        await coord.shutdown()
        tg.cancel_scope.cancel()
