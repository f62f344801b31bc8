"""ShareGroupCoordinator on a manual clock: session timeouts as timers, records and their replay."""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from kbroker.clock import ManualClock
from kbroker.codec.error_codes import ErrorCode
from kbroker.groups import share_records as rec
from kbroker.groups.share_group import ShareGroupCoordinator
from kbroker.groups.storage import KeyValue, StoredRecord

TOPIC = uuid.UUID(int=42)
CONFIG = {"group.share.session.timeout.ms": 45000, "group.share.heartbeat.interval.ms": 5000,
          "group.share.max.size": 10}


class Log:
    def __init__(self) -> None:
        self.records: list[KeyValue] = []
        self.fail = False

    async def append(self, group_id: str, records: list[KeyValue]) -> ErrorCode:
        if self.fail:
            return ErrorCode.NOT_COORDINATOR
        self.records += records
        return ErrorCode.NONE


def make(log: Log, clock: ManualClock, settings: dict[str, str] | None = None) -> ShareGroupCoordinator:
    return ShareGroupCoordinator(
        clock, CONFIG.__getitem__, lookup=lambda n: (TOPIC, 4) if n == "t" else None,
        topic_name=lambda t: "t" if t == TOPIC else None, append=log.append,
        group_setting=lambda g, k: (settings or {}).get(k))


def hb(c: ShareGroupCoordinator, member: str, epoch: int, topics: list[str] | None = None) -> dict[str, Any]:
    return anyio.run(c.heartbeat, "g", member, epoch, None, topics, "client", "/127.0.0.1")


def test_session_timeout_removes_member_and_reassigns() -> None:
    clock, log = ManualClock(), Log()
    c = make(log, clock, {"share.session.timeout.ms": "10000"})
    removed: list[tuple[str, str]] = []
    c.on_member_expired.append(lambda g, m: removed.append((g, m)))
    a = hb(c, "a", 0, ["t"])
    assert a["error_code"] == 0 and a["heartbeat_interval_ms"] == 5000
    hb(c, "b", 0, ["t"])
    a2 = hb(c, "a", a["member_epoch"], None)
    assert len(a2["assignment"]["topic_partitions"][0]["partitions"]) == 2
    clock.advance(9000)
    hb(c, "a", a2["member_epoch"], None)  # a heartbeats, b does not
    clock.advance(1000)
    assert c.timers.run_due() == 1
    assert removed == [("g", "b")] and set(c.groups["g"].members) == {"a"}
    a3 = hb(c, "a", a2["member_epoch"], None)
    assert a3["member_epoch"] == 3 and a3["assignment"]["topic_partitions"][0]["partitions"] == [0, 1, 2, 3]
    clock.advance(10000)
    c.timers.run_due()
    assert c.groups["g"].state == "Empty"
    assert c.listings()[0].group_type == "share" and c.listings()[0].state == "Empty"


def test_records_replay_after_restart_and_failed_writes() -> None:
    clock, log = ManualClock(), Log()
    c = make(log, clock)
    hb(c, "a", 0, ["t"])
    hb(c, "b", 0, ["t", "missing"])
    hb(c, "b", 2, None)
    kinds = [rec.decode_key(k)[0] for k, _ in log.records]
    assert set(kinds) == {rec.MEMBER_METADATA, rec.GROUP_METADATA}
    assert all(k[:2] in (b"\x00\x0a", b"\x00\x0b") for k, _ in log.records)
    hb(c, "a", 1, None)
    assert anyio.run(c.delete, "g") == ErrorCode.NON_EMPTY_GROUP
    replayed = make(Log(), clock)
    replayed.install(0, [StoredRecord(i, k, v) for i, (k, v) in enumerate(log.records)])
    g = replayed.groups["g"]
    assert g.group_epoch == 2 and set(g.members) == {"a", "b"}
    assert g.members["b"].subscribed == ("t", "missing")
    # Replayed members must heartbeat again within the session timeout.
    clock.advance(45000)
    replayed.timers.run_due()
    assert replayed.groups["g"].members == {}
    # A write that fails: the joining member is not added.
    log.fail = True
    out = hb(c, "c", 0, ["t"])
    assert out["error_code"] == ErrorCode.COORDINATOR_NOT_AVAILABLE and "c" not in c.groups["g"].members


def test_failed_write_of_a_new_group_leaves_no_group() -> None:
    log = Log()
    log.fail = True
    c = make(log, ManualClock())
    assert hb(c, "a", 0, ["t"])["error_code"] == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert c.groups == {} and c.listings() == []
