"""The topics pages and actions against a real broker: what clients created shows, what the
console does clients see, Kafka's errors come back, and read-only mode refuses every action."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kbroker.console.live import FetchCounter
from kbroker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(overrides={"console.port": "0"}) as b:
        yield b


@pytest.fixture(scope="module")
def read_only() -> Iterator[BrokerThread]:
    with BrokerThread(overrides={"console.port": "0", "console.read.only": "true"}) as b:
        yield b


def url(b: BrokerThread, path: str) -> str:
    return f"http://127.0.0.1:{b.broker.console.port}{path}"


def create(b: BrokerThread, name: str, partitions: int = 1, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1, config=configs)]).values():
        f.result(10)


def row(html: str, attr: str, key: str) -> str:
    m = re.search(rf'<tr {attr}="{re.escape(key)}">(.*?)</tr>', html, re.S)
    assert m, f"no row {attr}={key}"
    return m.group(1)


def cell(row_html: str, cls: str) -> str:
    m = re.search(rf'class="[^"]*\b{cls}\b[^"]*"[^>]*>(.*?)</td>', row_html, re.S)
    assert m, f"no .{cls}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def describe(b: BrokerThread, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    result = admin.describe_configs([ConfigResource("topic", topic)])
    return {k: v.value for k, v in next(iter(result.values())).result(10).items()}


def test_topics_created_and_filled_by_clients_are_listed(broker: BrokerThread) -> None:
    create(broker, "list-orders", 3, **{"cleanup.policy": "compact", "retention.ms": "3600000"})
    create(broker, "list-audit", 1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(9):
        producer.send("list-orders", key=b"k%d" % i, value=b"v" * 100, partition=i % 3)
    producer.flush(10)
    producer.close()
    html = httpx.get(url(broker, "/topics")).text
    orders = row(html, "data-topic", "list-orders")
    assert cell(orders, "partitions") == "3" and cell(orders, "messages") == "9"
    assert cell(orders, "cleanup") == "compact" and cell(orders, "retention") == "1 h"
    assert int(re.search(r'data-bytes="(\d+)"', orders).group(1)) > 900
    audit = row(html, "data-topic", "list-audit")
    assert cell(audit, "messages") == "0" and cell(audit, "retention") == "7 d" and cell(audit, "cleanup") == "delete"
    assert 'id="create-topic"' in html and 'hx-confirm=' in html
    # The filter narrows the list (case-insensitively); what it typed is escaped.
    filtered = httpx.get(url(broker, "/topics"), params={"q": "ORDERS"}).text
    assert 'data-topic="list-orders"' in filtered and 'data-topic="list-audit"' not in filtered
    hostile = httpx.get(url(broker, "/topics"), params={"q": "<script>x</script>"}).text
    assert "<script>x</script>" not in hostile and "&lt;script&gt;x&lt;/script&gt;" in hostile


def test_topic_detail_shows_offsets_leaders_and_configs_with_their_source(broker: BrokerThread) -> None:
    create(broker, "detail-a", 2, **{"retention.ms": "60000"})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for _ in range(5):
        producer.send("detail-a", b"x", partition=1)
    producer.flush(10)
    producer.close()
    html = httpx.get(url(broker, "/topics/detail-a")).text
    p0, p1 = row(html, "data-partition", "0"), row(html, "data-partition", "1")
    assert (cell(p0, "start"), cell(p0, "end")) == ("0", "0")
    assert (cell(p1, "start"), cell(p1, "end"), cell(p1, "leader"), cell(p1, "isr")) == ("0", "5", "1", "1")
    retention = row(html, "data-config", "retention.ms")
    assert (cell(retention, "value"), cell(retention, "source")) == ("60000", "DYNAMIC_TOPIC_CONFIG")
    cleanup = row(html, "data-config", "cleanup.policy")
    assert (cell(cleanup, "value"), cell(cleanup, "source")) == ("delete", "DEFAULT_CONFIG")
    assert '<svg id="rate"' in html
    for form in ('id="alter-config"', 'id="delete-topic"', 'id="produce"'):
        assert form in html
    missing = httpx.get(url(broker, "/topics/no-such-topic"))
    assert missing.status_code == 404 and "no-such-topic" in missing.text


def test_creating_a_topic_from_the_console(broker: BrokerThread) -> None:
    r = httpx.post(url(broker, "/topics"), data={"name": "made-here", "partitions": "4", "replication_factor": "",
                                                  "configs": "retention.ms=120000\ncleanup.policy=compact\n"})
    assert r.status_code == 200 and "Created topic made-here" in r.text
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    assert consumer.partitions_for_topic("made-here") == {0, 1, 2, 3}
    consumer.close()
    configs = describe(broker, "made-here")
    assert configs["retention.ms"] == "120000" and configs["cleanup.policy"] == "compact"
    # Kafka's errors, as a client would get them.
    again = httpx.post(url(broker, "/topics"), data={"name": "made-here", "partitions": "1"})
    assert again.status_code == 400 and "TOPIC_ALREADY_EXISTS" in again.text
    bad_config = httpx.post(url(broker, "/topics"), data={"name": "made-bad", "configs": "retention.ms=soon"})
    assert bad_config.status_code == 400 and "INVALID_CONFIG" in bad_config.text
    bad_name = httpx.post(url(broker, "/topics"), data={"name": "a/b"})
    assert bad_name.status_code == 400 and "INVALID_TOPIC_EXCEPTION" in bad_name.text
    zero = httpx.post(url(broker, "/topics"), data={"name": "made-zero", "partitions": "0"})
    assert zero.status_code == 400 and "INVALID_PARTITIONS" in zero.text
    # The console's own checks: clear 400s before anything is asked of the broker.
    for form, message in (({"name": "x", "partitions": "many"}, "partitions must be an integer"),
                          ({"name": ""}, "a topic needs a name"),
                          ({"name": "x", "configs": "no equals sign"}, "expected key=value")):
        r = httpx.post(url(broker, "/topics"), data=form)
        assert r.status_code == 400 and message in r.text
    r = httpx.post(url(broker, "/topics"), content=b'{"name": "x"}', headers={"content-type": "application/json"})
    assert r.status_code == 415
    assert "made-bad" not in broker.broker.metadata.topics and "made-zero" not in broker.broker.metadata.topics


def test_altering_and_resetting_a_config(broker: BrokerThread) -> None:
    create(broker, "alter-a")
    r = httpx.post(url(broker, "/topics/alter-a/config"), data={"key": "retention.ms", "value": "5000"})
    assert r.status_code == 200 and "retention.ms set to 5000" in r.text
    assert describe(broker, "alter-a")["retention.ms"] == "5000"
    html = httpx.get(url(broker, "/topics/alter-a")).text
    assert cell(row(html, "data-config", "retention.ms"), "source") == "DYNAMIC_TOPIC_CONFIG"
    r = httpx.post(url(broker, "/topics/alter-a/config"), data={"key": "retention.ms", "delete": "1"})
    assert r.status_code == 200 and "reset to its default" in r.text
    assert describe(broker, "alter-a")["retention.ms"] == "604800000"
    bad = httpx.post(url(broker, "/topics/alter-a/config"), data={"key": "retention.ms", "value": "abc"})
    assert bad.status_code == 400 and "INVALID_CONFIG" in bad.text and "abc" in bad.text
    unknown = httpx.post(url(broker, "/topics/alter-a/config"), data={"key": "no.such.config", "value": "1"})
    assert unknown.status_code == 400 and "INVALID_CONFIG" in unknown.text
    missing = httpx.post(url(broker, "/topics/alter-nope/config"), data={"key": "retention.ms", "value": "1"})
    assert missing.status_code == 400 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.text
    assert describe(broker, "alter-a")["retention.ms"] == "604800000"


def test_producing_a_test_message_reaches_consumers(broker: BrokerThread) -> None:
    create(broker, "produce-a", 3)
    r = httpx.post(url(broker, "/topics/produce-a/produce"),
                   data={"partition": "2", "key": "order-7", "value": '{"qty": 3}', "headers": "source=console\ntrace=abc"})
    assert r.status_code == 200 and "Produced to produce-a-2 at offset 0" in r.text
    consumer = CKConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "produce-check",
                           "auto.offset.reset": "earliest"})
    consumer.subscribe(["produce-a"])
    msg = None
    for _ in range(40):
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            break
    consumer.close()
    assert msg is not None and not msg.error()
    assert (msg.partition(), msg.key(), msg.value()) == (2, b"order-7", b'{"qty": 3}')
    assert msg.headers() == [("source", b"console"), ("trace", b"abc")]
    # Without a partition: the key's partition, as Kafka's default partitioner picks it.
    from kbroker.client.data import partition_for_key
    r = httpx.post(url(broker, "/topics/produce-a/produce"), data={"key": "k1", "value": "v"})
    assert f"produce-a-{partition_for_key(b'k1', 3)} at offset" in r.text
    wrong = httpx.post(url(broker, "/topics/produce-a/produce"), data={"partition": "9", "value": "v"})
    assert wrong.status_code == 400 and "UNKNOWN_TOPIC_OR_PARTITION" in wrong.text
    negative = httpx.post(url(broker, "/topics/produce-a/produce"), data={"partition": "-1", "value": "v"})
    assert negative.status_code == 400 and "partition must be at least 0" in negative.text
    big = httpx.post(url(broker, "/topics/produce-a/produce"), data={"value": "v" * (2 * 1024 * 1024)})
    assert big.status_code == 413


def test_deleting_a_topic(broker: BrokerThread) -> None:
    create(broker, "delete-a")
    r = httpx.post(url(broker, "/topics/delete-a/delete"))
    assert r.status_code == 200 and "Deleted topic delete-a" in r.text
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    assert "delete-a" not in consumer.topics()
    consumer.close()
    assert 'data-topic="delete-a"' not in httpx.get(url(broker, "/topics")).text
    again = httpx.post(url(broker, "/topics/delete-a/delete"))
    assert again.status_code == 400 and "UNKNOWN_TOPIC_OR_PARTITION" in again.text


def test_read_only_refuses_every_action_and_hides_the_forms(read_only: BrokerThread) -> None:
    create(read_only, "ro-a")
    html = httpx.get(url(read_only, "/topics")).text
    assert 'data-topic="ro-a"' in html and 'id="create-topic"' not in html and 'id="read-only"' in html
    detail = httpx.get(url(read_only, "/topics/ro-a")).text
    for form in ('id="alter-config"', 'id="delete-topic"', 'id="produce"'):
        assert form not in detail
    for path, data in (("/topics", {"name": "ro-b"}), ("/topics/ro-a/delete", {}),
                       ("/topics/ro-a/config", {"key": "retention.ms", "value": "1"}),
                       ("/topics/ro-a/produce", {"value": "v"})):
        r = httpx.post(url(read_only, path), data=data)
        assert r.status_code == 403 and "read-only" in r.text, path
    topics = read_only.broker.metadata.topics
    assert "ro-b" not in topics and "ro-a" in topics
    assert describe(read_only, "ro-a")["retention.ms"] == "604800000"
    log = read_only.broker.log_manager.get_log("ro-a", 0)
    assert log.log_end_offset == 0


def test_the_topic_stream_sends_its_rates(broker: BrokerThread) -> None:
    create(broker, "rate-a")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=100)
    consumer.assign([TopicPartition("rate-a", 0)])
    consumer.seek_to_beginning()
    peak_seen = False
    with httpx.Client(timeout=10) as http, http.stream("GET", url(broker, "/live/topics/rate-a")) as stream:
        deadline = time.monotonic() + 15
        event = ""
        for line in stream.iter_lines():
            assert time.monotonic() < deadline
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "rate":
                assert line.startswith('data: <svg id="rate"')
                assert any(isinstance(i, FetchCounter) for i in broker.broker.interceptors)
                peak = float(re.search(r'data-peak="([^"]+)"', line).group(1))
                if peak > 0:
                    peak_seen = True
                    break
                for _ in range(10):
                    producer.send("rate-a", b"z" * 100)
                producer.flush(10)
                consumer.poll(200)
    producer.close()
    consumer.close()
    assert peak_seen
    assert httpx.get(url(broker, "/live/topics/nope")).status_code == 404
    deadline = time.monotonic() + 10
    while any(isinstance(i, FetchCounter) for i in broker.broker.interceptors):
        assert time.monotonic() < deadline, "the counter stayed after the viewer left"
        time.sleep(0.05)


def test_the_console_user_gets_the_brokers_acls(tmp_path: Path) -> None:
    """Without a login the console user is User:ANONYMOUS: it sees and changes only what its ACLs allow."""
    from kbroker.security.acl import AclBinding
    from kbroker.security.model import AclOperation, AclPermissionType, PatternType, ResourceType
    from kbroker.security.store import FileStateStore

    data = tmp_path / "data"
    allowed = [AclBinding(ResourceType.TOPIC, "open-", PatternType.PREFIXED, "User:ANONYMOUS", "*", op,
                          AclPermissionType.ALLOW)
               for op in (AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.WRITE)]
    FileStateStore(data).save("acls", [a.to_json() for a in allowed])
    with BrokerThread(data, {"console.port": "0",
                             "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer"}) as b:
        for name in ("open-a", "closed-a"):
            b.call(lambda n=name: b.broker.metadata.create_topic(n, 1, 1))
        html = httpx.get(url(b, "/topics")).text
        assert 'data-topic="open-a"' in html and 'data-topic="closed-a"' not in html
        assert httpx.get(url(b, "/topics/closed-a")).status_code == 404
        assert httpx.get(url(b, "/topics/closed-a/messages")).status_code == 404
        assert httpx.get(url(b, "/topics/open-a")).status_code == 200
        produced = httpx.post(url(b, "/topics/open-a/produce"), data={"value": "v"})
        assert produced.status_code == 200 and "at offset 0" in produced.text
        # No ALTER_CONFIGS, DELETE or CREATE: Kafka's authorization errors.
        alter = httpx.post(url(b, "/topics/open-a/config"), data={"key": "retention.ms", "value": "1"})
        assert alter.status_code == 400 and "TOPIC_AUTHORIZATION_FAILED" in alter.text
        delete = httpx.post(url(b, "/topics/open-a/delete"))
        assert delete.status_code == 400 and "TOPIC_AUTHORIZATION_FAILED" in delete.text
        create = httpx.post(url(b, "/topics"), data={"name": "open-b"})
        assert create.status_code == 400 and "TOPIC_AUTHORIZATION_FAILED" in create.text
        denied = httpx.post(url(b, "/topics/closed-a/produce"), data={"value": "v"})
        assert denied.status_code == 400 and "TOPIC_AUTHORIZATION_FAILED" in denied.text
        assert set(b.broker.metadata.topics) >= {"open-a", "closed-a"} and "open-b" not in b.broker.metadata.topics
