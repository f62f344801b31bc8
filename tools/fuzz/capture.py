"""Capture request frames from real clients, as extra seeds (``captured.txt``).

An in-process broker records every frame it is handed while kafka-python and
confluent-kafka produce, consume in a group, and run admin calls against it. The
frames keep each client's own choices (client ids, versions, batch layouts, fields
Kafka ignores), which schema-generated seeds do not have.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbroker.codec import peek_request_header

CAPTURED = Path(__file__).with_name("captured.txt")
#: Frames kept per (client, API key, version): enough variety, a small file.
PER_KEY = 2


def _kafka_python(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    from kafka.structs import TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic + "-kp", 2, 1, topic_configs={"retention.ms": "60000"})])
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic + "-kp")])
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic + "-kp", configs={"retention.ms": "1000"})])
    admin.create_partitions({topic + "-kp": NewPartitions(3)})
    p = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", enable_idempotence=True)
    for i in range(20):
        p.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"x")])
    p.flush()
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic + "-kpg", auto_offset_reset="earliest",
                      consumer_timeout_ms=4000)
    for _ in c:
        pass
    c.commit()
    c.close()
    admin.list_groups()
    admin.describe_groups([topic + "-kpg"])
    admin.list_group_offsets(topic + "-kpg")
    admin.delete_group_offsets(topic + "-kpg", [TopicPartition(topic, 0)])
    admin.delete_groups([topic + "-kpg"])
    admin.delete_topics([topic + "-kp"])
    admin.close()


def _confluent(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic + "-ck", 2, 1, config={"cleanup.policy": "delete"})]).values():
        f.result(30)
    for f in admin.describe_configs([ConfigResource("topic", topic + "-ck")]).values():
        f.result(30)
    for f in admin.create_partitions([NewPartitions(topic + "-ck", 3)]).values():
        f.result(30)
    admin.describe_cluster().result(30)
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "zstd", "enable.idempotence": True,
                  "linger.ms": 5})
    for i in range(20):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, headers={"h": b"x"})
    p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic + "-ckg", "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": "cooperative-sticky"})
    c.subscribe([topic])
    deadline = time.monotonic() + 15
    got = 0
    while got < 20 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.committed([TopicPartition(topic, 0)], 10)
    c.get_watermark_offsets(TopicPartition(topic, 0), 10)
    c.offsets_for_times([TopicPartition(topic, 0, 0)], 10)
    c.close()
    admin.list_consumer_groups().result(30)
    for f in admin.delete_topics([topic + "-ck"]).values():
        f.result(30)


CLIENTS: dict[str, Callable[[str, str], None]] = {"kafka-python": _kafka_python, "confluent-kafka": _confluent}


def capture(out: Path = CAPTURED) -> int:
    """Run the clients against an in-process broker; write the frames to ``out``. Returns the count."""
    import kbroker.server.connection as connection
    from kbroker.testing import BrokerThread

    frames: list[tuple[str, bytes]] = []
    current = ["?"]
    real = connection.dispatch

    async def recording(broker: Any, session: Any, frame: bytes) -> Any:
        frames.append((current[0], bytes(frame)))
        return await real(broker, session, frame)

    connection.dispatch = recording  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as d, BrokerThread(Path(d), {"group.initial.rebalance.delay.ms": "0"}) as b:
            for name, run in CLIENTS.items():
                current[0] = name
                try:
                    run(b.bootstrap, f"cap-{uuid.uuid4().hex[:6]}")
                except Exception as e:  # a client missing or failing still leaves the frames it sent
                    print(f"{name}: {type(e).__name__}: {e}")
    finally:
        connection.dispatch = real  # type: ignore[assignment]
    kept: dict[tuple[str, int, int], int] = {}
    lines = []
    for client, frame in frames:
        try:
            key, version, _ = peek_request_header(frame)
        except Exception:
            continue
        n = kept.get((client, key, version), 0)
        if n >= PER_KEY:
            continue
        kept[(client, key, version)] = n + 1
        lines.append(f"{client} {key} {version} {frame.hex()}")
    out.write_text("\n".join(lines) + "\n")
    return len(lines)
