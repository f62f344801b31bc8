"""``python -m tools.kafka_reference fetch|serve|tool|smoke``: drive the reference Kafka broker."""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import tempfile
import time
import uuid

from tools.kafka_reference.reference import KafkaReference, resolve_jars, run_tool, write_kafka_path


def _smoke(workdir: str) -> int:
    """Start Kafka, create a topic, round-trip a message with kafka-python and confluent-kafka."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, KafkaProducer

    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = time.monotonic() - t0
        return time.monotonic()

    t = time.monotonic()
    resolve_jars()
    t = lap("resolve", t)
    with KafkaReference(workdir) as k:
        t = lap("start", t)
        timings["  of which storage format"] = k.format_seconds
        timings["  of which spawn to ApiVersions"] = k.startup_seconds
        rss = k.rss_bytes()
        topic = "smoke"
        admin = AdminClient({"bootstrap.servers": k.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        t = lap("create_topic(confluent)", t)

        kp = KafkaProducer(bootstrap_servers=k.bootstrap)
        kp.send(topic, b"from-kafka-python").get(30)
        kp.close()
        cp = Producer({"bootstrap.servers": k.bootstrap})
        cp.produce(topic, b"from-confluent")
        if cp.flush(30):
            raise RuntimeError("confluent produce not delivered")
        t = lap("produce(kafka-python+confluent)", t)

        kc = KafkaConsumer(topic, bootstrap_servers=k.bootstrap, group_id=f"kp-{uuid.uuid4()}",
                           auto_offset_reset="earliest", consumer_timeout_ms=20000)
        got_kp = [m.value for m in itertools.islice(kc, 2)]
        kc.close()
        t = lap("consume(kafka-python)", t)

        cc = Consumer({"bootstrap.servers": k.bootstrap, "group.id": f"ck-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest"})
        cc.subscribe([topic])
        got_ck: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got_ck) < 2 and time.monotonic() < deadline:
            m = cc.poll(1.0)
            value = None if m is None or m.error() else m.value()
            if value is not None:
                got_ck.append(value)
        cc.close()
        t = lap("consume(confluent)", t)
        # Close librdkafka handles before the broker goes, so they do not log its disappearance.
        del admin, cp
    lap("stop", t)

    want = [b"from-kafka-python", b"from-confluent"]
    ok = got_kp == want and got_ck == want
    print(f"bootstrap was {k.bootstrap}; broker RSS after start {rss / 2**20:.0f} MiB")
    for name, secs in timings.items():
        print(f"  {name:34s} {secs:6.2f}s")
    print(f"kafka-python consumed {got_kp}; confluent consumed {got_ck}")
    print("smoke: OK" if ok else "smoke: FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m tools.kafka_reference", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="resolve the Kafka jars with Maven")
    f.add_argument("--force", action="store_true")
    s = sub.add_parser("serve", help="start a broker and print its bootstrap until Ctrl-C")
    s.add_argument("--workdir", help="defaults to a fresh temporary directory")
    t = sub.add_parser("tool", help="run a Kafka CLI tool (short name or main class)")
    t.add_argument("--bootstrap", help="adds --bootstrap-server BOOTSTRAP")
    t.add_argument("name")
    t.add_argument("args", nargs=argparse.REMAINDER)
    kp = sub.add_parser("kafka-path", help="write DIR/bin/kafka-*.sh scripts running the tools (a KAFKA_PATH)")
    kp.add_argument("dir")
    m = sub.add_parser("smoke", help="start, create a topic, produce and consume with two clients, stop")
    m.add_argument("--workdir")
    a = p.parse_args(argv)

    if a.cmd == "fetch":
        print(resolve_jars(force=a.force))
        return 0
    if a.cmd == "kafka-path":
        print(write_kafka_path(a.dir))
        return 0
    if a.cmd == "tool":
        return run_tool(a.name, a.args, bootstrap=a.bootstrap, timeout=3600, capture=False).returncode
    workdir = a.workdir or tempfile.mkdtemp(prefix="kafka-reference-")
    if a.cmd == "smoke":
        return _smoke(workdir)
    # SIGTERM stops the broker as Ctrl-C does: without this the Python process would die and
    # leave the JVM running.
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    with KafkaReference(workdir) as k:
        try:
            # Inside the try: a SIGTERM sent as soon as the line is read must stop Kafka cleanly.
            print(f"{k.bootstrap}  (started in {k.startup_seconds:.1f}s, log {k.log_path})", flush=True)
            while k.proc is not None and k.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
