"""Fault rules against real clients: librdkafka's idempotent producer retries through
injected errors and lost answers without duplicates, consumers survive closed connections,
a throttle mutes the connection, and the HTTP endpoint manages the rules."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAuthorizationFailedError

from kbroker.broker import Broker, StartupError
from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread, make_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from socket_helpers import read_frame  # noqa: E402

METADATA = 3


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path / "d", {"faults.port": "0", "num.partitions": "1"}) as b:
        yield b


def produce_all(bootstrap: str, topic: str, n: int, **extra: Any) -> None:
    """Send ``n`` numbered messages with librdkafka's idempotent producer; every one delivered."""
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                  "retry.backoff.ms": 50, "reconnect.backoff.ms": 10, "message.timeout.ms": 30000, **extra})
    for i in range(n):
        p.produce(topic, f"m{i:04d}".encode(), on_delivery=lambda err, _msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(30) == 0 and errors == []


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 20) -> list[bytes]:
    """Every message of partition 0 from the start (at least ``expect`` of them, then what else comes)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False,
                  "reconnect.backoff.ms": 10, "fetch.error.backoff.ms": 50})
    c.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value())
            elif m is None and len(got) >= expect:
                break
    finally:
        c.close()
    return got


def expected(n: int) -> list[bytes]:
    return [f"m{i:04d}".encode() for i in range(n)]


@pytest.mark.parametrize("error", ["NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT"])
def test_an_idempotent_producer_retries_through_errors_without_duplicates(broker: BrokerThread, error: str) -> None:
    produce_all(broker.bootstrap, "t", 1)  # the topic exists, the producer id is known
    rule = broker.faults.add("Produce", error=error, topic="t", count=3)
    produce_all(broker.bootstrap, "t", 50)
    assert broker.faults.fired(rule) == 3
    assert consume_all(broker.bootstrap, "t", 51) == [b"m0000", *expected(50)]


@pytest.mark.parametrize("action", ["drop_response", "close_after"])
def test_a_produce_applied_but_not_answered_is_not_written_twice(broker: BrokerThread, action: str) -> None:
    produce_all(broker.bootstrap, "t", 1)
    rule = broker.faults.add("Produce", action, topic="t")
    produce_all(broker.bootstrap, "t", 20, **{"request.timeout.ms": 500, "socket.timeout.ms": 500})
    assert broker.faults.fired(rule) == 1
    assert consume_all(broker.bootstrap, "t", 21) == [b"m0000", *expected(20)]


def test_a_produce_closed_before_it_is_applied_is_written_once(broker: BrokerThread) -> None:
    produce_all(broker.bootstrap, "t", 1)
    rule = broker.faults.add("Produce", "close_before", count=2)
    produce_all(broker.bootstrap, "t", 20)
    assert broker.faults.fired(rule) == 2
    assert consume_all(broker.bootstrap, "t", 21) == [b"m0000", *expected(20)]


def test_consumers_survive_connections_closed_mid_fetch(broker: BrokerThread) -> None:
    produce_all(broker.bootstrap, "t", 200, **{"batch.num.messages": 20})
    rule = broker.faults.add("Fetch", "close_after", topic="t", count=3)
    assert consume_all(broker.bootstrap, "t", 200) == expected(200)
    assert broker.faults.fired(rule) == 3

    rule = broker.faults.add("Fetch", "close_before", topic="t", count=2)
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_bytes=2000,
                       reconnect_backoff_ms=50, request_timeout_ms=5000)
    try:
        kc.assign([KTopicPartition("t", 0)])
        kc.seek_to_beginning()
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 200 and time.monotonic() < deadline:
            for records in kc.poll(timeout_ms=200).values():
                got.extend(r.value for r in records)
    finally:
        kc.close()
    assert got == expected(200)
    assert broker.faults.fired(rule) == 2


def test_a_rule_for_one_partition_and_client_spares_the_others(broker: BrokerThread) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("two", 2, 1)])
    admin.close()
    rule = broker.faults.add("Produce", error="TOPIC_AUTHORIZATION_FAILED", topic="two", partition=1,
                             client_id="victim", count=0)
    victim = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="victim", retries=0, linger_ms=0)
    other = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="other", retries=0, linger_ms=0)
    try:
        assert victim.send("two", b"a", partition=0).get(10).offset == 0
        with pytest.raises(TopicAuthorizationFailedError):
            victim.send("two", b"b", partition=1).get(10)
        assert other.send("two", b"c", partition=1).get(10).offset == 0
    finally:
        victim.close(5)
        other.close(5)
    assert broker.faults.fired(rule) == 1
    # kafka-python sends both partitions' batches in one request: partition 1 alone fails.
    batched = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="victim", linger_ms=200, retries=0)
    try:
        sent = [batched.send("two", b"d", partition=p) for p in (0, 1, 0)]
        batched.flush(10)
        assert sent[0].get(10).offset == 1 and sent[2].get(10).offset == 2
        with pytest.raises(TopicAuthorizationFailedError):
            sent[1].get(10)
    finally:
        batched.close(5)
    assert broker.faults.fired(rule) == 2


def metadata_request(s: socket.socket, correlation_id: int) -> Any:
    s.sendall(encode_request(METADATA, 12, correlation_id, {"topics": [], "allow_auto_topic_creation": False,
                                                            "include_topic_authorized_operations": False}))
    got_id, body = decode_response(METADATA, 12, read_frame(s))
    assert got_id == correlation_id
    return body


def test_latency_and_throttle_delay_the_connection_as_asked(broker: BrokerThread) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        assert metadata_request(s, 1).throttle_time_ms == 0
        broker.faults.add("Metadata", "latency", ms=300)
        started = time.monotonic()
        metadata_request(s, 2)
        assert time.monotonic() - started >= 0.3
        broker.faults.add("Metadata", "throttle", ms=600)
        started = time.monotonic()
        assert metadata_request(s, 3).throttle_time_ms == 600
        answered = time.monotonic() - started
        assert answered < 0.5  # the answer comes at once (KIP-219) ...
        metadata_request(s, 4)
        assert time.monotonic() - started >= 0.6  # ... and the next request waits out the throttle
    assert [r["fired"] for r in broker.faults.rules()] == [1, 1]


def test_the_http_endpoint_adds_lists_and_removes_rules(broker: BrokerThread) -> None:
    url = f"http://127.0.0.1:{broker.faults.http_port}/faults"
    with httpx.Client(timeout=10) as http:
        assert http.get(url).json() == {"rules": []}
        made = http.post(url, json={"api": "Metadata", "error": "CLUSTER_AUTHORIZATION_FAILED", "count": 0})
        assert made.status_code == 201
        rule_id = made.json()["id"]
        other = http.post(url, json={"api": "Fetch", "action": "latency", "ms": 5, "ttl_ms": 60000}).json()["id"]
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
            s.sendall(encode_request(METADATA, 13, 1, {"topics": [{"name": "x"}], "allow_auto_topic_creation": False,
                                                       "include_topic_authorized_operations": False}))
            _, body = decode_response(METADATA, 13, read_frame(s))
        assert body.error_code == 31 and [(t.name, t.error_code) for t in body.topics] == [("x", 31)]
        listed = http.get(url).json()["rules"]
        assert [(r["id"], r["api"], r["action"], r["fired"], r["state"]) for r in listed] == \
            [(rule_id, "Metadata", "error", 1, "active"), (other, "Fetch", "latency", 0, "active")]
        assert http.get(f"{url}/{rule_id}").json()["error"] == "CLUSTER_AUTHORIZATION_FAILED"
        assert http.delete(f"{url}/{rule_id}").status_code == 200
        assert http.delete(f"{url}/{rule_id}").status_code == 404
        assert http.get(f"{url}/{rule_id}").status_code == 404
        bad = http.post(url, json={"api": "Produce", "error": "NOPE"})
        assert bad.status_code == 400 and "unknown Kafka error" in bad.json()["error"]
        assert http.post(url, content=b"{not json").status_code == 400
        assert http.delete(url).json() == {"removed": 1}
        assert http.get(url).json() == {"rules": []}


def test_without_a_rule_or_port_the_injector_stays_out_of_the_request_path(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d") as b:
        assert not b.broker.interceptors and b.faults.http_port is None
        rule = b.faults.add("Metadata", "latency", ms=1)
        assert list(b.broker.interceptors) == [b.faults]
        KafkaProducer(bootstrap_servers=b.bootstrap).close()
        assert b.faults.fired(rule) == 1
        b.faults.clear()
        assert not b.broker.interceptors


def test_a_taken_faults_port_stops_start_up(tmp_path: Path) -> None:
    import anyio

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        broker = Broker(make_config(tmp_path / "d", {"faults.port": str(port)}))

        async def main() -> None:
            async with broker.running():
                pytest.fail("the broker started without its faults endpoint")

        with pytest.raises(StartupError, match=f"cannot serve fault rules on port {port}"):
            anyio.run(main)
    # It let go of its data directory: another broker starts on it.
    with BrokerThread(tmp_path / "d"):
        pass


def test_a_broker_without_faults_port_imports_no_http_server(tmp_path: Path) -> None:
    probe = (
        "import sys, anyio\nfrom pathlib import Path\nfrom kbroker.broker import Broker\n"
        "from kbroker.testing import make_config\n"
        f"b = Broker(make_config(Path({str(tmp_path / 'd')!r})))\n"
        "async def main():\n"
        "    async with b.running():\n"
        "        b.faults.add('Metadata', 'latency', ms=1)\n"
        "anyio.run(main)\n"
        "print(' '.join(m for m in ('starlette', 'uvicorn') if m in sys.modules) or 'none')\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["none"]


def test_rules_change_from_another_thread_while_clients_are_served(broker: BrokerThread) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, retries=5, retry_backoff_ms=10,
                             enable_idempotence=True)
    try:
        sent = []
        for i in range(40):
            rule = broker.faults.add("Produce", error="NOT_LEADER_OR_FOLLOWER", topic="busy", count=1)
            sent.append(producer.send("busy", f"m{i:04d}".encode()))
            if i % 2:
                broker.faults.remove(rule)  # sometimes before it fired, sometimes after
            else:
                broker.faults.clear()
        offsets = [f.get(10).offset for f in sent]
    finally:
        producer.close(5)
    assert sorted(offsets) == list(range(40))
    assert broker.faults.rules() == []
    assert list(broker.broker.interceptors) == [broker.faults]  # kept in place while it serves HTTP
    assert consume_all(broker.bootstrap, "busy", 40) == expected(40)
