"""KIP-848 consumer groups with real clients over a real socket: confluent-kafka with
``group.protocol=consumer``, beside kafka-python's classic protocol, and raw requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from wait_helpers import wait_until

from kbroker.codec.error_codes import ErrorCode
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

#: Quick heartbeats so that a local group settles in a fraction of a second.
OVERRIDES = {"group.consumer.heartbeat.interval.ms": "100", "group.consumer.min.heartbeat.interval.ms": "100",
             "group.consumer.session.timeout.ms": "6000", "group.consumer.min.session.timeout.ms": "1000",
             "group.consumer.max.size": "5", "group.min.session.timeout.ms": "1000",
             "group.initial.rebalance.delay.ms": "0"}
HEARTBEAT, DESCRIBE = 68, 69


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "data", OVERRIDES) as b:
        yield b


def create(bootstrap: str, name: str, partitions: int = 6) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def produce(bootstrap: str, topic: str, start: int, stop: int, partitions: int = 6) -> set[bytes]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    values = {f"{topic}-{i}".encode() for i in range(start, stop)}
    for i in range(start, stop):
        p.produce(topic, f"{topic}-{i}".encode(), partition=i % partitions)
    assert p.flush(15) == 0
    return values


class Member(threading.Thread):
    """A confluent-kafka consumer on the consumer group protocol, polling in its own thread
    and committing synchronously after each batch."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], **extra: Any) -> None:
        super().__init__(daemon=True)
        self.config = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                       "topic.metadata.refresh.interval.ms": 500, **extra}
        self.topics = topics
        self.consumed: list[bytes] = []
        self.assignment: frozenset[tuple[str, int]] = frozenset()
        self.error: BaseException | None = None
        #: Stop without leaving the group (a crash, as the broker sees it).
        self.abandon = False
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            c = Consumer(self.config)
            c.subscribe(self.topics)
            while not self._halt.is_set():
                msgs = c.consume(100, 0.05)
                got = [m.value() for m in msgs if m.error() is None]
                self.consumed.extend(got)
                self.assignment = frozenset((tp.topic, tp.partition) for tp in c.assignment())
                if got:
                    try:
                        c.commit(asynchronous=False)
                    except KafkaException as e:
                        if e.args[0].code() != -168:  # _NO_OFFSET
                            raise
            if not self.abandon:
                c.close()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


def settled(members: list[Member], partitions: set[tuple[str, int]]) -> bool:
    """Every partition assigned to exactly one member, and the loads balanced (the uniform
    assignor's target). Without the balance, a moment in mid-reconciliation passes too: a
    newcomer already holds a partition one member released while another has not yet
    released its own (3 + 2 + 1 of 6), and what is asserted next sees that moment."""
    owned = [tp for m in members for tp in m.assignment]
    sizes = [len(m.assignment) for m in members]
    return (len(owned) == len(set(owned)) and set(owned) == partitions and min(sizes) > 0
            and max(sizes) - min(sizes) <= 1)


def test_three_members_split_a_topic_and_consume_each_message_once(broker: BrokerThread) -> None:
    create(broker.bootstrap, "t6")
    sent = produce(broker.bootstrap, "t6", 0, 120)
    members = [Member(broker.bootstrap, "g3", ["t6"]) for _ in range(3)]
    for m in members:
        m.start()
    try:
        everything = {("t6", p) for p in range(6)}
        wait_until(lambda: settled(members, everything) and sum(len(m.consumed) for m in members) >= 120, 20,
                   "three members to split t6 and consume it")
        counts = Counter(v for m in members for v in m.consumed)
        assert set(counts) == sent and set(counts.values()) == {1}
        assert all(len(m.assignment) == 2 for m in members)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups(["g3"])["g3"].result(10)
        assert desc.type.name == "CONSUMER" and desc.state.name == "STABLE" and len(desc.members) == 3
        listed = admin.list_consumer_groups().result(10).valid
        assert [(g.group_id, g.type.name) for g in listed] == [("g3", "CONSUMER")]
    finally:
        for m in members:
            m.stop()


def test_leaving_and_joining_move_only_the_partitions_they_must(broker: BrokerThread) -> None:
    create(broker.bootstrap, "mv")
    everything = {("mv", p) for p in range(6)}
    a, b, c = (Member(broker.bootstrap, "gm", ["mv"]) for _ in range(3))
    for m in (a, b, c):
        m.start()
    try:
        wait_until(lambda: settled([a, b, c], everything), 20, "three members settled")
        before_a, before_b = a.assignment, b.assignment
        c.stop()
        wait_until(lambda: settled([a, b], everything), 20, "two members settled after one left")
        assert a.assignment >= before_a and b.assignment >= before_b  # only c's partitions moved
        two_a, two_b = a.assignment, b.assignment
        d = Member(broker.bootstrap, "gm", ["mv"])
        d.start()
        wait_until(lambda: settled([a, b, d], everything), 20, "three members settled after one joined")
        # The newcomer took one partition from each; the others kept the rest.
        assert a.assignment <= two_a and b.assignment <= two_b and len(a.assignment) == len(b.assignment) == 2
        d.stop()
        wait_until(lambda: settled([a, b], everything), 20, "two members settled again")
        sent = produce(broker.bootstrap, "mv", 0, 30)
        wait_until(lambda: len(a.consumed) + len(b.consumed) >= 30, 20, "the rest consumed")
        assert Counter(a.consumed + b.consumed) == Counter(sent)
    finally:
        for m in (a, b):
            m.stop()


def test_a_restarted_member_resumes_from_its_committed_offsets(broker: BrokerThread) -> None:
    create(broker.bootstrap, "rs", 2)
    first = produce(broker.bootstrap, "rs", 0, 20, 2)
    m = Member(broker.bootstrap, "gr", ["rs"])
    m.start()
    wait_until(lambda: len(m.consumed) >= 20, 20, "first batch consumed")
    m.stop()
    assert set(m.consumed) == first
    second = produce(broker.bootstrap, "rs", 20, 30, 2)
    again = Member(broker.bootstrap, "gr", ["rs"])
    again.start()
    try:
        wait_until(lambda: len(again.consumed) >= 10, 20, "second batch consumed")
        time.sleep(0.3)
        assert sorted(again.consumed) == sorted(second)
    finally:
        again.stop()


def test_a_regex_subscription_picks_up_a_topic_created_later(broker: BrokerThread) -> None:
    create(broker.bootstrap, "pre-a", 1)
    create(broker.bootstrap, "other", 1)
    m = Member(broker.bootstrap, "gx", ["^pre-.*"])
    m.start()
    try:
        wait_until(lambda: m.assignment == {("pre-a", 0)}, 20, "pre-a assigned")
        create(broker.bootstrap, "pre-b", 1)
        wait_until(lambda: m.assignment == {("pre-a", 0), ("pre-b", 0)}, 20, "pre-b assigned too")
        sent = produce(broker.bootstrap, "pre-b", 0, 5, 1) | produce(broker.bootstrap, "other", 0, 5, 1)
        wait_until(lambda: len(m.consumed) >= 5, 20, "pre-b consumed")
        time.sleep(0.3)
        assert set(m.consumed) == {v for v in sent if v.startswith(b"pre-b")}
    finally:
        m.stop()


def test_classic_and_consumer_protocol_groups_consume_the_same_topic(broker: BrokerThread) -> None:
    from kafka import KafkaConsumer

    create(broker.bootstrap, "mixed")
    sent = produce(broker.bootstrap, "mixed", 0, 60)
    new = [Member(broker.bootstrap, "g-new", ["mixed"]) for _ in range(2)]
    for m in new:
        m.start()
    classic_got: list[bytes] = []
    classic = KafkaConsumer("mixed", bootstrap_servers=broker.bootstrap, group_id="g-classic",
                            auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=300,
                            consumer_timeout_ms=200)
    try:
        deadline = time.monotonic() + 30
        while len(classic_got) < 60 and time.monotonic() < deadline:
            classic_got.extend(r.value for r in classic)
        wait_until(lambda: sum(len(m.consumed) for m in new) >= 60, 20, "the consumer group caught up")
        assert Counter(classic_got) == Counter(sent)
        assert Counter(v for m in new for v in m.consumed) == Counter(sent)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        types = {g.group_id: g.type.name for g in admin.list_consumer_groups().result(10).valid}
        assert types == {"g-new": "CONSUMER", "g-classic": "CLASSIC"}
    finally:
        classic.close()
        for m in new:
            m.stop()


def test_a_broker_restart_keeps_the_group_its_assignment_and_offsets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with BrokerThread(data, OVERRIDES) as b:
        create(b.bootstrap, "keep", 2)
        sent = produce(b.bootstrap, "keep", 0, 10, 2)
        m = Member(b.bootstrap, "gk", ["keep"])
        m.start()
        try:
            wait_until(lambda: len(m.consumed) >= 10 and len(m.assignment) == 2, 20, "consumed")
            assert set(m.consumed) == sent
            group = b.broker.groups.consumer.get("gk")
            before = (group.group_epoch, {mid: x.assigned for mid, x in group.members.items()})
        finally:
            m.abandon = True  # no leave: the member stays until its session ends
            m.stop()
    with BrokerThread(data, OVERRIDES) as b:
        group = b.broker.groups.consumer.get("gk")
        assert group is not None
        assert (group.group_epoch, {mid: x.assigned for mid, x in group.members.items()}) == before
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        desc = admin.describe_consumer_groups(["gk"])["gk"].result(10)
        assert desc.type.name == "CONSUMER" and len(desc.members) == 1
        offsets = admin.list_consumer_group_offsets([_request("gk")])["gk"].result(10)
        assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 5), (1, 5)]


def _request(group: str) -> Any:
    from confluent_kafka import ConsumerGroupTopicPartitions

    return ConsumerGroupTopicPartitions(group)


def _join(group: str, member: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"group_id": group, "member_id": member, "member_epoch": 0, "instance_id": None,
                            "rack_id": None, "rebalance_timeout_ms": 5000, "subscribed_topic_names": ["t"],
                            "subscribed_topic_regex": None, "server_assignor": None, "topic_partitions": []}
    body.update(kw)
    return body


def test_hostile_heartbeats_get_kafkas_errors_and_the_broker_stays_up(broker: BrokerThread) -> None:
    wire = WireClient(broker.bootstrap)
    try:
        cases = [
            (_join("h", "m", member_epoch=7), ErrorCode.GROUP_ID_NOT_FOUND),
            (_join("h", "m", member_epoch=-9), ErrorCode.INVALID_REQUEST),
            (_join("h", "m", server_assignor="cooperative-sticky"), ErrorCode.UNSUPPORTED_ASSIGNOR),
            (_join("h", "m", subscribed_topic_regex="((("), ErrorCode.INVALID_REGULAR_EXPRESSION),
            (_join("h", "m", subscribed_topic_regex="a{1000}{1000}{1000}"), ErrorCode.INVALID_REGULAR_EXPRESSION),
            (_join("h", "m", subscribed_topic_regex="x" * 30_000), ErrorCode.INVALID_REGULAR_EXPRESSION),
            (_join("h", "m", topic_partitions=None), ErrorCode.INVALID_REQUEST),
            (_join("h", "x" * 10_000), ErrorCode.INVALID_REQUEST),
        ]
        for body, error in cases:
            assert wire.call(HEARTBEAT, 1, body)["error_code"] == error, body
        joined = [wire.call(HEARTBEAT, 1, _join("h", f"m{i}")) for i in range(6)]
        assert [r["error_code"] for r in joined] == [0] * 5 + [ErrorCode.GROUP_MAX_SIZE_REACHED]
        first = joined[0]
        assert first["member_epoch"] == 1 and first["heartbeat_interval_ms"] == 100
        fenced = wire.call(HEARTBEAT, 1, _join("h", "m0", member_epoch=99, topic_partitions=None,
                                               subscribed_topic_names=None, rebalance_timeout_ms=-1))
        assert fenced["error_code"] == ErrorCode.FENCED_MEMBER_EPOCH
        v0 = wire.call(HEARTBEAT, 0, _join("h0", ""))  # v0: the broker names the member
        assert v0["error_code"] == 0 and len(v0["member_id"]) > 10
        desc = wire.call(DESCRIBE, 0, {"group_ids": ["h", "absent"], "include_authorized_operations": True})
        h, absent = desc["groups"]
        assert h["error_code"] == 0 and h["group_state"] in ("Reconciling", "Stable") and len(h["members"]) == 5
        assert h["authorized_operations"] > 0 and h["assignor_name"] == "uniform"
        assert (absent["error_code"], absent["error_message"]) == (ErrorCode.GROUP_ID_NOT_FOUND,
                                                                   "Group absent not found.")
        # DescribeGroups v6 of a consumer group: as Kafka, not a classic group.
        classic = wire.call(15, 5, {"groups": ["h"], "include_authorized_operations": False})["groups"][0]
        assert (classic["error_code"], classic["group_state"]) == (0, "Dead")
        # Still serving.
        assert wire.call(HEARTBEAT, 1, _join("h2", "ok"))["error_code"] == 0
    finally:
        wire.close()


def test_the_cli_shows_the_group_type(broker: BrokerThread, capsys: pytest.CaptureFixture[str]) -> None:
    from kafka import KafkaConsumer

    from kbroker.cli import main

    create(broker.bootstrap, "cli")
    produce(broker.bootstrap, "cli", 0, 12)
    m = Member(broker.bootstrap, "g-cli", ["cli"])
    m.start()
    classic = KafkaConsumer("cli", bootstrap_servers=broker.bootstrap, group_id="g-old", auto_offset_reset="earliest",
                            consumer_timeout_ms=200)
    try:
        wait_until(lambda: len(m.consumed) >= 12 and len(m.assignment) == 6, 20, "consumed")
        assert len(list(classic)) > 0
        classic.commit()

        def run(*argv: str) -> list[list[str]]:
            capsys.readouterr()
            assert main([*argv, "--bootstrap-server", broker.bootstrap]) == 0
            return [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]

        assert run("groups", "--list") == [["g-cli"], ["g-old"]]
        assert run("groups", "--list", "--type") == [["GROUP", "TYPE", "PROTOCOL"], ["g-cli", "Consumer", "consumer"],
                                                     ["g-old", "Classic", "consumer"]]
        summary = run("groups", "--describe", "--type", "--group", "g-cli", "--group", "g-old")
        assert summary[0] == ["GROUP", "TYPE", "STATE", "ASSIGNMENT-STRATEGY", "#MEMBERS"]
        assert summary[1] == ["g-cli", "Consumer", "Stable", "uniform", "1"]
        assert summary[2][:3] == ["g-old", "Classic", "Stable"]
        header, *rows = run("groups", "--describe", "--group", "g-cli")
        assert header[:3] == ["GROUP", "TOPIC", "PARTITION"]
        assert sorted(int(r[2]) for r in rows) == list(range(6)) and all(r[3] == "2" for r in rows)
        assert len({r[6] for r in rows}) == 1 and rows[0][6] != "-"  # one member owns them all
    finally:
        classic.close()
        m.stop()


def test_offset_commit_and_fetch_v9_v10_check_member_epochs_and_name_topics_by_id(broker: BrokerThread) -> None:
    create(broker.bootstrap, "ids", 2)
    topic_id = broker.broker.metadata.topic("ids").topic_id
    unknown = type(topic_id)(int=12345)
    wire = WireClient(broker.bootstrap)
    try:
        joined = wire.call(HEARTBEAT, 1, _join("gi", "m1", subscribed_topic_names=["ids"]))
        assert joined["member_epoch"] == 1

        def commit(version: int, epoch: int, member: str = "m1") -> list[tuple[Any, int, int]]:
            part = {"partition_index": 0, "committed_offset": 7, "committed_leader_epoch": -1,
                    "committed_metadata": "x"}
            topics = ([{"topic_id": topic_id, "partitions": [part]}, {"topic_id": unknown, "partitions": [part]}]
                      if version >= 10 else [{"name": "ids", "partitions": [part]}])
            body = {"group_id": "gi", "generation_id_or_member_epoch": epoch, "member_id": member,
                    "group_instance_id": None, "topics": topics}
            resp = wire.call(8, version, body)
            return [(t.get("topic_id") if version >= 10 else t["name"], p["partition_index"], p["error_code"])
                    for t in resp["topics"] for p in t["partitions"]]

        assert commit(9, 1) == [("ids", 0, 0)]
        assert commit(9, 2) == [("ids", 0, ErrorCode.STALE_MEMBER_EPOCH)]
        assert commit(9, 1, "nobody") == [("ids", 0, ErrorCode.UNKNOWN_MEMBER_ID)]
        assert commit(10, 1) == [(topic_id, 0, 0), (unknown, 0, ErrorCode.UNKNOWN_TOPIC_ID)]

        def fetch(version: int, epoch: int, member: str | None = "m1") -> tuple[int, list[tuple[Any, int, int]]]:
            topic = ({"topic_id": topic_id, "partition_indexes": [0, 1]} if version >= 10
                     else {"name": "ids", "partition_indexes": [0, 1]})
            body = {"groups": [{"group_id": "gi", "member_id": member, "member_epoch": epoch, "topics": [topic]}],
                    "require_stable": True}
            g = wire.call(9, version, body)["groups"][0]
            return g["error_code"], [(t.get("topic_id") if version >= 10 else t["name"], p["partition_index"],
                                      p["committed_offset"]) for t in g["topics"] for p in t["partitions"]]

        assert fetch(9, 1) == (0, [("ids", 0, 7), ("ids", 1, -1)])
        assert fetch(10, 1) == (0, [(topic_id, 0, 7), (topic_id, 1, -1)])
        assert fetch(9, 3)[0] == ErrorCode.STALE_MEMBER_EPOCH
        assert fetch(9, 1, "nobody")[0] == ErrorCode.UNKNOWN_MEMBER_ID
        assert fetch(9, -1, None) == (0, [("ids", 0, 7), ("ids", 1, -1)])  # an admin client
        listed = wire.call(16, 5, {"states_filter": ["Stable"], "types_filter": ["consumer"]})["groups"]
        assert [(g["group_id"], g["group_type"], g["group_state"]) for g in listed] == [("gi", "consumer", "Stable")]
        assert wire.call(16, 5, {"states_filter": [], "types_filter": ["classic"]})["groups"] == []
    finally:
        wire.close()


def test_a_group_config_set_by_an_admin_changes_the_heartbeat_interval(broker: BrokerThread) -> None:
    """``consumer.heartbeat.interval.ms`` set on the GROUP resource reaches the group's members
    at their next heartbeat; deleting it brings back the broker's value."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def alter(value: str | None) -> None:
        op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
        res = ConfigResource(ResourceType.GROUP, "hb", incremental_configs=[
            ConfigEntry("consumer.heartbeat.interval.ms", value or "", incremental_operation=op)])
        admin.incremental_alter_configs([res])[res].result(10)

    wire = WireClient(broker.bootstrap)
    try:
        joined = wire.call(HEARTBEAT, 1, _join("hb", "m"))
        assert joined["error_code"] == 0 and joined["heartbeat_interval_ms"] == 100  # the broker's
        alter("1234")
        again = wire.call(HEARTBEAT, 1, _join("hb", "m", member_epoch=joined["member_epoch"], topic_partitions=None,
                                              subscribed_topic_names=None, rebalance_timeout_ms=-1))
        assert again["error_code"] == 0 and again["heartbeat_interval_ms"] == 1234
        alter(None)
        back = wire.call(HEARTBEAT, 1, _join("hb", "m", member_epoch=again["member_epoch"], topic_partitions=None,
                                             subscribed_topic_names=None, rebalance_timeout_ms=-1))
        assert back["heartbeat_interval_ms"] == 100
    finally:
        wire.close()


def test_a_subscription_too_large_to_store_changes_nothing(broker: BrokerThread) -> None:
    # The member's record would not fit a __consumer_offsets batch (message.max.bytes): the
    # write fails, and the group must be as before (as Kafka, which reverts its state),
    # not hold a member its client was told did not join.
    create(broker.bootstrap, "big", 2)
    wire = WireClient(broker.bootstrap, timeout=30)
    try:
        names = ["big"] + [f"{i:0240d}" for i in range(6000)]
        refused = wire.call(HEARTBEAT, 1, _join("gb", "a", subscribed_topic_names=names))
        assert refused["error_code"] == ErrorCode.UNKNOWN_SERVER_ERROR
        assert broker.broker.groups.consumer.get("gb") is None
        ok = wire.call(HEARTBEAT, 1, _join("gb", "b", subscribed_topic_names=["big"]))
        assert (ok["error_code"], ok["member_epoch"]) == (0, 1)
        assert [t["partitions"] for t in ok["assignment"]["topic_partitions"]] == [[0, 1]]
    finally:
        wire.close()
