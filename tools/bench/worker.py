"""Client side of the benchmark: ``python -m tools.bench.worker SPEC_JSON``.

Runs in its own process, never in the broker's. ``SPEC_JSON`` is
``{"bootstrap": "host:port", "steps": [{"kind": ..., ...}, ...]}``; each step's result is
printed as one JSON line on stdout as soon as it is known (so a later hang or crash
loses nothing already measured). A step that fails is reported with ``"error"``: a
failure is a result, never replaced by a number.

Step kinds: ``produce``, ``consume``, ``e2e``, ``rtt``, ``poll``, ``cpu``, ``conns``, ``idle``, ``many``,
``delete``, ``fill``.
Each names a ``client`` (``confluent`` or ``kafka-python``) where it uses one.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import random
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

from tools.bench.rawapi import percentile, short_error
from tools.bench.wire import HOST_DEFAULT, api_versions_frame, metadata_frame, read_response, round_trip

logging.basicConfig(level=logging.CRITICAL)  # kafka-python is chatty on failures we report anyway

Result = dict[str, Any]


def emit(result: Result) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()




# -- topic administration (always through confluent-kafka's admin client) -------------------


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 120.0,
                 config: dict[str, str] | None = None, replication: int = 1) -> float:
    """Create ``topic`` (``replication`` replicas per partition); return seconds until the broker confirmed it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": int(timeout * 1000)})
    started = time.perf_counter()
    futures = admin.create_topics(
        [NewTopic(topic, partitions, replication, config=config or {})], operation_timeout=timeout,
        request_timeout=timeout
    )
    futures[topic].result(timeout)
    return time.perf_counter() - started


def wait_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    """Wait until metadata shows every partition of ``topic`` with a leader."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{topic}: {partitions} partitions not all led after {timeout}s")


# -- produce ----------------------------------------------------------------------------------


def confluent_producer_config(bootstrap: str, acks: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "log_level": 0,
        "queue.buffering.max.messages": 200_000,
    }
    if acks == "all-idem":
        cfg.update({"acks": "all", "enable.idempotence": True})
    else:
        cfg.update({"acks": int(acks) if acks.lstrip("-").isdigit() else acks, "enable.idempotence": False})
    return cfg


def produce_confluent(bootstrap: str, topic: str, size: int, acks: str, count: int, seconds: float) -> Result:
    from confluent_kafka import KafkaException, Producer

    fatal: list[str] = []
    errors: list[str] = []
    delivered = [0]

    def on_error(err: Any) -> None:
        if err.fatal():
            fatal.append(str(err))

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1

    cfg = confluent_producer_config(bootstrap, acks)
    cfg["error_cb"] = on_error
    producer = Producer(cfg)
    payload = os.urandom(size)
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    try:
        while sent < count and not fatal:
            if (sent & 1023) == 0 and time.perf_counter() > deadline:
                break
            try:
                producer.produce(topic, payload, on_delivery=on_delivery)
                sent += 1
            except BufferError:
                producer.poll(0.001)
        remaining = producer.flush(max(10.0, seconds * 2))
    except (KafkaException, SystemError, RuntimeError) as e:
        fatal.append(short_error(e))
        remaining = -1
    elapsed = time.perf_counter() - started
    return {
        "sent": sent, "msgs": delivered[0], "bytes": delivered[0] * size, "seconds": elapsed,
        "failed": len(errors), "undelivered": remaining,
        "error": (fatal[0] if fatal else (errors[0] if errors and not delivered[0] else None)),
    }


def produce_kafka_python(bootstrap: str, topic: str, size: int, acks: str, count: int, seconds: float) -> Result:
    from kafka import KafkaProducer

    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "linger_ms": 5, "batch_size": 256 * 1024,
        "max_block_ms": 10_000, "request_timeout_ms": 15_000,
    }
    if acks == "all-idem":
        kwargs.update(acks="all", enable_idempotence=True)
    else:
        kwargs.update(acks=int(acks) if acks.isdigit() else acks, enable_idempotence=False)
    errors: list[str] = []
    delivered = [0]

    def ok(_md: Any) -> None:
        delivered[0] += 1

    def bad(e: BaseException) -> None:
        errors.append(short_error(e))

    payload = os.urandom(size)
    started = time.perf_counter()
    try:
        producer = KafkaProducer(**kwargs)
    except Exception as e:
        return {"sent": 0, "msgs": 0, "bytes": 0, "seconds": time.perf_counter() - started, "error": short_error(e)}
    sent = 0
    deadline = started + seconds
    fatal: str | None = None
    try:
        while sent < count:
            if (sent & 1023) == 0 and time.perf_counter() > deadline:
                break
            producer.send(topic, payload).add_callback(ok).add_errback(bad)
            sent += 1
            if errors and not delivered[0] and len(errors) > 100:
                break
        producer.flush(timeout=max(10.0, seconds * 2))
    except Exception as e:
        fatal = short_error(e)
    elapsed = time.perf_counter() - started
    with contextlib.suppress(Exception):
        producer.close(timeout=5)
    return {
        "sent": sent, "msgs": delivered[0], "bytes": delivered[0] * size, "seconds": elapsed,
        "failed": len(errors),
        "error": fatal or (errors[0] if errors and not delivered[0] else None),
    }


# -- consume ----------------------------------------------------------------------------------

#: librdkafka pauses fetching a partition for ``fetch.queue.backoff.ms`` (default 1000)
#: whenever its local queue holds ``queued.min.messages`` (100,000); with 100-byte messages
#: that pause, not the broker, sets the consume rate, and how often it trips depends on
#: how a broker happens to fill its fetch responses. A short back-off measures the broker.
CONFLUENT_CONSUMER_TUNING: dict[str, Any] = {"fetch.queue.backoff.ms": 10}


def consume_timing(started: float, first: tuple[float, int, int] | None, last: float, n: int, nbytes: int) -> Result:
    """Throughput counts from the first batch received to the last, so the consumer's
    set-up (connect, metadata, offset lookup) is left out; it is ``first_batch_s``.
    ``first`` is (time, msgs, bytes) of the first batch, whose messages are not in the rate."""
    if not n or first is None:
        return {"msgs": n, "bytes": nbytes, "seconds": 0.0, "first_batch_s": None}
    t0, n0, b0 = first
    if n > n0 and last > t0:
        return {"msgs": n, "bytes": nbytes, "rate_msgs": n - n0, "rate_bytes": nbytes - b0, "seconds": last - t0,
                "first_batch_s": t0 - started}
    return {"msgs": n, "bytes": nbytes, "seconds": last - started, "first_batch_s": t0 - started}


def rate_of(r: Result) -> float:
    """Messages per second of a consume result (0 when nothing was timed)."""
    n = r.get("rate_msgs", r.get("msgs", 0))
    return float(n / r["seconds"]) if n and r.get("seconds") else 0.0


def consume_confluent(bootstrap: str, topic: str, partitions: int, expect: int, seconds: float) -> Result:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-{topic}", "enable.auto.commit": False,
        "log_level": 0, "enable.partition.eof": False, **CONFLUENT_CONSUMER_TUNING,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    n = nbytes = 0
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    first: tuple[float, int, int] | None = None
    last = 0.0
    try:
        while n < expect and time.perf_counter() < deadline:
            # A short timeout: consume(n, t) waits for n messages or t, and while it waits
            # librdkafka prefetches, which would start the clock with data already here.
            batch = consumer.consume(10_000, 0.01)
            for m in batch:
                err = m.error()
                if err is not None:
                    errors.append(str(err))
                    continue
                n += 1
                nbytes += len(m.value() or b"")
            if batch:
                last = time.perf_counter()
                first = first or (last, n, nbytes)
    finally:
        consumer.close()
    return {
        **consume_timing(started, first, last, n, nbytes), "expected": expect,
        "error": None if n >= expect else (errors[0] if errors else f"got {n} of {expect} within {seconds:.0f}s"),
    }


def consume_kafka_python(bootstrap: str, topic: str, partitions: int, expect: int, seconds: float) -> Result:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=10_000, fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    n = nbytes = 0
    started = time.perf_counter()
    deadline = started + seconds
    first: tuple[float, int, int] | None = None
    last = 0.0
    try:
        while n < expect and time.perf_counter() < deadline:
            polled = consumer.poll(timeout_ms=200, max_records=10_000)
            for records in polled.values():
                for r in records:
                    n += 1
                    nbytes += len(r.value)
            if polled:
                last = time.perf_counter()
                first = first or (last, n, nbytes)
    finally:
        consumer.close()
    return {
        **consume_timing(started, first, last, n, nbytes), "expected": expect,
        "error": None if n >= expect else f"got {n} of {expect} within {seconds:.0f}s",
    }


# -- latency ----------------------------------------------------------------------------------


def e2e(bootstrap: str, client: str, topic: str, rate: int, seconds: float, size: int) -> Result:
    """Produce at ``rate`` msgs/s for ``seconds``, consume concurrently; latency per message.

    The send time (monotonic ns) is the first 8 bytes of the value; producer and consumer
    live in this one process so the clocks agree. The first 10% of messages are warm-up.
    """
    total = max(1, int(rate * seconds))
    pad = b"\0" * max(0, size - 8)
    latencies: list[float] = []
    done = threading.Event()
    consumer_error: list[str] = []

    def consume_loop() -> None:
        try:
            if client == "confluent":
                from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

                c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}",
                              "enable.auto.commit": False, "log_level": 0, "fetch.wait.max.ms": 500})
                c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
                while not done.is_set() and len(latencies) < total:
                    # poll(), not consume(n, t): consume waits for n messages or the timeout.
                    m = c.poll(0.05)
                    if m is not None and m.error() is None:
                        latencies.append((time.monotonic_ns() - struct.unpack(">Q", (m.value() or b"")[:8])[0]) / 1e6)
                c.close()
            else:
                from kafka import KafkaConsumer
                from kafka import TopicPartition as KTopicPartition

                kc = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                   auto_offset_reset="earliest", fetch_max_wait_ms=500)
                tp = KTopicPartition(topic, 0)
                kc.assign([tp])
                kc.seek_to_beginning(tp)
                while not done.is_set() and len(latencies) < total:
                    for records in kc.poll(timeout_ms=50).values():
                        for r in records:
                            latencies.append((time.monotonic_ns() - struct.unpack(">Q", r.value[:8])[0]) / 1e6)
                kc.close()
        except Exception as e:
            consumer_error.append(short_error(e))

    thread = threading.Thread(target=consume_loop, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the consumer connect and start fetching
    interval = 1.0 / rate
    started = time.perf_counter()
    if client == "confluent":
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 0, "log_level": 0})
        settle()
        for i in range(total):
            target = started + i * interval
            while (now := time.perf_counter()) < target:
                time.sleep(min(target - now, 0.001))
                p.poll(0)
            p.produce(topic, struct.pack(">Q", time.monotonic_ns()) + pad, partition=0)
            p.poll(0)
        p.flush(10)
    else:
        from kafka import KafkaProducer

        kp = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0, enable_idempotence=False)
        settle()
        for i in range(total):
            target = started + i * interval
            while (now := time.perf_counter()) < target:
                time.sleep(min(target - now, 0.001))
            kp.send(topic, struct.pack(">Q", time.monotonic_ns()) + pad, partition=0)
        kp.flush(10)
        kp.close(5)
    thread.join(timeout=10)
    done.set()
    thread.join(timeout=5)
    received = len(latencies)
    steady = sorted(latencies[total // 10:])
    return {
        "rate": rate, "sent": total, "received": received,
        "p50_ms": percentile(steady, 0.50), "p99_ms": percentile(steady, 0.99),
        "p999_ms": percentile(steady, 0.999), "max_ms": steady[-1] if steady else None,
        "error": consumer_error[0] if consumer_error else (None if received >= total else f"received {received} of {total}"),
    }


def settle() -> None:
    """Before a latency loop: collect, then freeze what set-up left (kafka-python holds the
    metadata of every topic, tens of thousands of objects with many partitions), so the
    client's garbage collector rescanning it is not timed as broker latency."""
    gc.collect()
    gc.freeze()


def rtt(bootstrap: str, client: str, topic: str, count: int, size: int) -> Result:
    """Single-message acks=all produce round trips, one at a time."""
    payload = os.urandom(size)
    times: list[float] = []
    error: str | None = None
    if client == "confluent":
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "log_level": 0})
        p.produce(topic, payload, partition=0)  # warm-up: connection and metadata
        p.flush(10)
        settle()
        failures: list[str] = []

        def cb(err: Any, _m: Any) -> None:
            if err is not None:
                failures.append(str(err))

        for _ in range(count):
            t0 = time.perf_counter()
            p.produce(topic, payload, partition=0, on_delivery=cb)
            if p.flush(10) != 0:
                error = "flush timed out"
                break
            times.append((time.perf_counter() - t0) * 1000)
        if failures:
            error = failures[0]
    else:
        from kafka import KafkaProducer

        # kafka-python 3 turns idempotence on by default; this is plain acks=all.
        kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=False)
        kp.send(topic, payload, partition=0).get(10)
        settle()
        try:
            for _ in range(count):
                t0 = time.perf_counter()
                kp.send(topic, payload, partition=0).get(10)
                times.append((time.perf_counter() - t0) * 1000)
        except Exception as e:
            error = short_error(e)
        kp.close(5)
    times.sort()
    return {"count": len(times), "p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99),
            "p999_ms": percentile(times, 0.999), "max_ms": times[-1] if times else None, "error": error}


#: The poll loop's poll timeout. librdkafka takes whole milliseconds and confluent-kafka
#: truncates, so this is poll(0): the loop spins a core while it waits, as the original did.
POLL_TIMEOUT_S = 0.0005


def poll_loop(bootstrap: str, topic: str, count: int, size: int, seconds: float) -> Result:
    """``produce()`` one message (no partition given: librdkafka picks one) then
    ``poll(0.0005)`` until its delivery callback ran; repeat ``count`` times or for
    ``seconds``. acks=all, linger.ms=0, idempotence off. Round trip percentiles, and how
    many polls a round trip took (the client's busy-spinning)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "enable.idempotence": False,
                  "log_level": 0})
    payload = os.urandom(size)
    for _ in range(20):  # warm-up: connection, metadata, every partition's leader
        p.produce(topic, payload)
    if p.flush(30) != 0:
        return {"count": 0, "error": "warm-up messages not delivered within 30s"}
    settle()
    delivered = [False]
    failures: list[str] = []

    def cb(err: Any, _m: Any) -> None:
        delivered[0] = True
        if err is not None:
            failures.append(str(err))

    times: list[float] = []
    polls_total = 0
    error: str | None = None
    started = time.perf_counter()
    deadline = started + seconds
    for _ in range(count):
        delivered[0] = False
        t0 = time.perf_counter()
        p.produce(topic, payload, on_delivery=cb)
        polls = 0
        give_up = t0 + 10.0
        while not delivered[0]:
            p.poll(POLL_TIMEOUT_S)
            polls += 1
            if (polls & 1023) == 0 and time.perf_counter() > give_up:
                error = "no delivery report within 10s"
                break
        if error:
            break
        times.append((time.perf_counter() - t0) * 1000)
        polls_total += polls
        if failures:
            error = failures[0]
            break
        if time.perf_counter() > deadline:
            break
    p.flush(10)
    n = len(times)
    times.sort()
    return {"count": n, "requested": count, "seconds": time.perf_counter() - started,
            "p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99),
            "p999_ms": percentile(times, 0.999), "max_ms": times[-1] if times else None,
            "polls_per_round_trip": polls_total / n if n else None,
            "error": error or (None if n >= count else f"{n} of {count} round trips within {seconds:.0f}s")}


# -- idle connections -------------------------------------------------------------------------


def open_connections(host: str, port: int, count: int) -> tuple[list[socket.socket], str | None, float]:
    """Open ``count`` connections, each completing an ApiVersions exchange (gives up after
    50 failures); ``(sockets, first error, seconds taken)``. The caller closes them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    socks: list[socket.socket] = []
    failures = 0
    first_error: str | None = None
    started = time.perf_counter()
    for i in range(count):
        try:
            s = socket.create_connection((host, port), timeout=10)
            s.settimeout(10)
            round_trip(s, api_versions_frame(i))
            socks.append(s)
        except OSError as e:
            failures += 1
            first_error = first_error or short_error(e)
            if failures > 50:
                break
    return socks, first_error, time.perf_counter() - started


def idle_connections(host: str, port: int, count: int, hold: float) -> Result:
    """Open ``count`` connections, each completing an ApiVersions exchange, hold them idle;
    meanwhile time Metadata round trips on one more connection; then check all still answer."""
    socks, first_error, open_s = open_connections(host, port, count)
    probe_times: list[float] = []
    try:
        with socket.create_connection((host, port), timeout=10) as probe:
            probe.settimeout(10)
            hold_until = time.perf_counter() + hold
            i = 0
            while time.perf_counter() < hold_until or i < 5:
                taken, _ = round_trip(probe, metadata_frame(i))
                probe_times.append(taken * 1000)
                i += 1
                time.sleep(0.05)
    except OSError as e:
        first_error = first_error or short_error(e)
    # Every held connection must still answer.
    alive = 0
    for i, s in enumerate(socks):
        with contextlib.suppress(OSError):
            s.sendall(api_versions_frame(100_000 + i))
    for s in socks:
        try:
            read_response(s)
            alive += 1
        except OSError:
            pass
        finally:
            s.close()
    probe_times.sort()
    return {
        "requested": count, "opened": len(socks), "alive_after_hold": alive, "open_seconds": open_s,
        "metadata_p50_ms": percentile(probe_times, 0.5), "metadata_p99_ms": percentile(probe_times, 0.99),
        "error": first_error if alive < count else None,
    }


# -- the produce round trip as connections grow -------------------------------------------------


class LongPollers:
    """``count`` connections each holding a Fetch with ``max_wait_ms`` on an empty
    partition, re-sent as each returns (never sooner than ``max_wait_ms`` after it was
    sent, so a broker that answers at once is polled at the same rate, not flooded;
    ``early`` counts those answers). Served by one thread until :meth:`stop`."""

    def __init__(self, host: str, port: int, topic: str, count: int, max_wait_ms: int) -> None:
        from tools.bench.rawapi import RawClient, fetch_body

        self.max_wait = max_wait_ms / 1000
        self.clients = []
        self.responses = self.early = 0
        self.error: str | None = None
        self._stop = threading.Event()
        try:
            for _ in range(count):
                c = RawClient(host, port)
                self.clients.append(c)
        except OSError as e:
            self.error = short_error(e)
        body = fetch_body(topic, 0, max_wait_ms)
        self.frames = {c.sock.fileno(): (c, c.frame(1, 12, body)) for c in self.clients}
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        import heapq
        import selectors

        from kbroker.codec import decode_response
        from tools.bench.rawapi import check

        sel = selectors.DefaultSelector()
        sent: dict[int, float] = {}
        due: list[tuple[float, int]] = []
        try:
            for fd, (c, frame) in self.frames.items():
                c.sock.sendall(frame)
                sent[fd] = time.perf_counter()
                sel.register(fd, selectors.EVENT_READ)
            while not self._stop.is_set():
                now = time.perf_counter()
                while due and due[0][0] <= now:
                    _, fd = heapq.heappop(due)
                    c, frame = self.frames[fd]
                    c.sock.sendall(frame)
                    sent[fd] = time.perf_counter()
                wait = 0.05 if not due else max(0.0, min(0.05, due[0][0] - now))
                for key, _ in sel.select(wait):
                    fd = int(key.fd)
                    c, frame = self.frames[fd]
                    check("Fetch (long poll)", decode_response(1, 12, c.receive())[1])
                    self.responses += 1
                    back = time.perf_counter()
                    if back - sent[fd] < self.max_wait * 0.9:
                        self.early += 1
                        heapq.heappush(due, (sent[fd] + self.max_wait, fd))
                    else:
                        c.sock.sendall(frame)
                        sent[fd] = time.perf_counter()
        except Exception as e:  # noqa: BLE001 - reported with the step
            self.error = self.error or short_error(e)
        finally:
            sel.close()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        for c in self.clients:
            c.close()


def produce_with_connections(host: str, port: int, pid: int | None, modes: list[str], count: int, warmup: int,
                             seconds: float, idle: int, fetchers: int, max_wait_ms: int, tag: str) -> Result:
    """Raw-socket Produce round trips (one 100 B record, acks=-1) with no other
    connection (``none``), with ``idle`` idle connections (``idle``: each completed an
    ApiVersions exchange) and with ``fetchers`` long-polling Fetch connections
    (``longpoll``; measured for at least two long-poll periods, so fetches expire and are
    re-sent during it); percentiles and the broker's CPU per request for each."""
    from tools.bench.rawapi import RawClient, create_topic, prepare, request_for, timed_round_trips

    out: Result = {"modes": {}}
    with RawClient(host, port) as client:
        topic = prepare(client, f"conns-{tag}")
        empty = f"bench-conns-{tag}-empty"
        if "longpoll" in modes:
            create_topic(client, empty, 1)
        key, version, body = request_for("produce", topic)
        for mode in modes:
            held: list[socket.socket] = []
            pollers: LongPollers | None = None
            r: Result = {}
            try:
                if mode == "idle":
                    held, err, open_s = open_connections(host, port, idle)
                    r.update(opened=len(held), open_s=open_s)
                    if len(held) < idle:
                        raise ConnectionError(f"opened {len(held)} of {idle}: {err}")
                elif mode == "longpoll":
                    pollers = LongPollers(host, port, empty, fetchers, max_wait_ms)
                    if pollers.error:
                        raise ConnectionError(f"opened {len(pollers.clients)} of {fetchers}: {pollers.error}")
                    pollers.start()
                    time.sleep(0.2)  # every fetch sent and parked
                elif mode != "none":
                    raise ValueError(f"unknown mode {mode!r}")
                floor = 2 * max_wait_ms / 1000 if mode == "longpoll" else 0.0
                r.update(timed_round_trips(client, "produce", key, version, body, count, warmup, seconds, pid,
                                           min_seconds=floor))
                if pollers is not None:
                    r.update(fetch_responses=pollers.responses, fetch_early=pollers.early)
                    if pollers.error:
                        r["error"] = "long-poll fetchers: " + pollers.error
            except Exception as e:  # noqa: BLE001 - a failed mode is a result
                r["error"] = short_error(e)
            finally:
                if pollers is not None:
                    pollers.stop()
                for s in held:
                    s.close()
            out["modes"][mode] = r
    failed = [m for m, r in out["modes"].items() if r.get("error")]
    if failed:
        out["failed"] = failed
    return out


# -- many partitions --------------------------------------------------------------------------


def many_partitions(bootstrap: str, topic: str, partitions: int, timeout: float) -> Result:
    """Create one topic with ``partitions`` partitions, time metadata for it and one
    produce of a message to every partition (acks=1, flushed)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    out: Result = {"partitions": partitions}
    try:
        out["create_s"] = create_topic(bootstrap, topic, partitions, timeout=timeout)
    except Exception as e:
        out["error"] = "create: " + short_error(e)
        return out
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        t0 = time.perf_counter()
        deadline = t0 + timeout
        while True:
            md = admin.list_topics(topic, timeout=timeout)
            seen = len(md.topics[topic].partitions) if topic in md.topics else 0
            if seen == partitions or time.perf_counter() > deadline:
                break
            time.sleep(0.1)
        out["metadata_ready_s"] = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t1 = time.perf_counter()
            md = admin.list_topics(topic, timeout=timeout)
            times.append(time.perf_counter() - t1)
        out["metadata_s"] = min(times)
        out["metadata_partitions"] = len(md.topics[topic].partitions)
    except Exception as e:
        out["error"] = "metadata: " + short_error(e)
        return out
    failures: list[str] = []

    def cb(err: Any, _m: Any) -> None:
        if err is not None:
            failures.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5, "log_level": 0,
                  "queue.buffering.max.messages": partitions + 1000})
    t0 = time.perf_counter()
    for part in range(partitions):
        p.produce(topic, b"x" * 100, partition=part, on_delivery=cb)
    left = p.flush(timeout)
    out["produce_all_s"] = time.perf_counter() - t0
    out["produce_failed"] = len(failures) + left
    if failures or left:
        out["error"] = f"produce: {len(failures)} failed, {left} undelivered" + (f" ({failures[0]})" if failures else "")
    # One more single-message produce to a random partition: does produce still answer fast?
    t0 = time.perf_counter()
    p.produce(topic, b"y" * 100, partition=random.randrange(partitions))
    p.flush(timeout)
    out["produce_one_s"] = time.perf_counter() - t0
    return out


def probe_stall(marks: list[tuple[float, float]], start: float, end: float) -> Result:
    """The probe's view of the window ``[start, end]``, from its round trips ``marks``
    (``(sent, completed)`` times, in order).

    ``stall_ms`` is the longest gap between consecutive completions where the later one
    falls after ``start``, up to and including the first completion at or after ``end``
    (a round trip still in flight when the window closed was stalled by it too); the gap
    into the window starts at the last completion before it. ``p99_ms`` is over the
    round trips that overlap the window.
    """
    gaps: list[float] = []
    before = [done for _, done in marks if done <= start]
    prev = before[-1] if before else start
    for _, done in marks:
        if done <= start:
            continue
        gaps.append(done - prev)
        prev = done
        if done >= end:
            break
    rtts = sorted((done - sent) * 1000 for sent, done in marks if sent <= end and done >= start)
    return {"stall_ms": max(gaps) * 1000 if gaps else None, "p99_ms": percentile(rtts, 0.99),
            "max_ms": rtts[-1] if rtts else None, "probes": len(rtts)}


def delete_under_load(bootstrap: str, topic: str, probe_topic: str, timeout: float, baseline: float,
                      tail: float) -> Result:
    """Delete ``topic`` while a probe connection sends Metadata requests for the
    one-partition ``probe_topic`` back to back, and report the probe's longest stall
    and p99 during the deletion: from sending DeleteTopics until ``tail`` seconds after
    it returned (a broker may finish the deletion after answering). ``baseline``
    seconds of probing before the deletion give the same figures undisturbed."""
    from confluent_kafka.admin import AdminClient

    create_topic(bootstrap, probe_topic, 1)
    wait_partitions(bootstrap, probe_topic, 1)
    host, _, port = bootstrap.rpartition(":")
    marks: list[tuple[float, float]] = []
    probe_error: list[str] = []
    stop = threading.Event()
    frame = metadata_frame(1, [probe_topic])

    def probe() -> None:
        try:
            with socket.create_connection((host or HOST_DEFAULT, int(port)), timeout=timeout) as s:
                s.settimeout(timeout)
                while not stop.is_set():
                    sent = time.perf_counter()
                    s.sendall(frame)
                    read_response(s)
                    marks.append((sent, time.perf_counter()))
        except OSError as e:
            probe_error.append(short_error(e))

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": int(timeout * 1000)})
    admin.list_topics(topic, timeout=timeout)  # connected before the clock starts
    settle()
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    out: Result = {"probe": f"Metadata v1 for {probe_topic} (raw wire, back to back)", "tail_s": tail}
    ready = time.perf_counter() + timeout
    while len(marks) < 10 and thread.is_alive() and time.perf_counter() < ready:
        time.sleep(0.01)  # the baseline starts once the probe is connected and answering
    t_base = time.perf_counter()
    time.sleep(baseline)
    t0 = time.perf_counter()
    try:
        admin.delete_topics([topic], operation_timeout=timeout, request_timeout=timeout)[topic].result(timeout)
    except Exception as e:
        out["error"] = "delete: " + short_error(e)
    t1 = time.perf_counter()
    out["delete_s"] = t1 - t0
    time.sleep(tail)
    stop.set()
    thread.join(timeout)
    gc.unfreeze()
    out["baseline"] = probe_stall([m for m in marks if m[1] < t0], t_base, t0)
    try:
        out["gone"] = topic not in admin.list_topics(timeout=timeout).topics
    except Exception as e:
        out["gone"] = None
        out.setdefault("error", "metadata after delete: " + short_error(e))
    out.update(probe_stall(marks, t0, t1 + tail))
    if probe_error and not out.get("error"):
        out["error"] = "probe: " + probe_error[0]
    elif thread.is_alive() and not out.get("error"):
        out["error"] = f"probe: no answer within {timeout:.0f}s"
    return out


# -- fill (data for the start-up test) ---------------------------------------------------------


def fill(bootstrap: str, topic: str, partitions: int, total_bytes: int, size: int, timeout: float,
         keys: int | None = None) -> Result:
    """Fill ``topic`` with ``size``-byte values, acks=1; with ``keys``, keyed values cycling over
    that many keys, all to partition 0 (the data a compaction pass reduces to one value per key)."""
    from confluent_kafka import Producer

    failures: list[str] = []

    def cb(err: Any, _m: Any) -> None:
        if err is not None and len(failures) < 10:
            failures.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 20, "batch.size": 1_000_000,
                  "log_level": 0, "queue.buffering.max.kbytes": 512 * 1024, "compression.type": "none"})
    payload = os.urandom(size)
    count = max(1, total_bytes // size)
    started = time.perf_counter()
    deadline = started + timeout
    sent = 0
    while sent < count and not failures and time.perf_counter() < deadline:
        try:
            if keys is None:
                p.produce(topic, payload, on_delivery=cb)
            else:
                p.produce(topic, payload, key=b"key-%08d" % (sent % keys), partition=0, on_delivery=cb)
            sent += 1
        except BufferError:
            p.poll(0.01)
    left = p.flush(max(30.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - started
    return {"msgs": sent - left - len(failures), "bytes": (sent - left) * size, "seconds": elapsed,
            "error": failures[0] if failures else (f"{left} undelivered" if left else None)}


# -- the cleaning phase ---------------------------------------------------------------------------


def alter_topic(bootstrap: str, topic: str, config: dict[str, str]) -> Result:
    """Set topic configs with IncrementalAlterConfigs."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    futures = admin.incremental_alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topic,
                                                              incremental_configs=entries)])
    for f in futures.values():
        f.result(30)
    return {"at": time.time()}


def rtt_until(bootstrap: str, topic: str, stop_file: str, max_seconds: float, size: int) -> Result:
    """acks=all single-message round trips (confluent) until ``stop_file`` exists."""
    from confluent_kafka import Producer

    payload = os.urandom(size)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "log_level": 0})
    p.produce(topic, payload, partition=0)
    p.flush(10)
    settle()
    times: list[float] = []
    started = time.perf_counter()
    error = None
    while not os.path.exists(stop_file) and time.perf_counter() - started < max_seconds:
        t0 = time.perf_counter()
        p.produce(topic, payload, partition=0)
        if p.flush(10) != 0:
            error = "flush timed out"
            break
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"count": len(times), "p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99),
            "p999_ms": percentile(times, 0.999), "max_ms": times[-1] if times else None,
            "seconds": time.perf_counter() - started, "error": error}


# -- driver -----------------------------------------------------------------------------------


def run_step(bootstrap: str, step: dict[str, Any]) -> Result:
    kind = step["kind"]
    client = step.get("client", "confluent")
    if kind == "produce":
        if step.get("create", True):
            create_topic(bootstrap, step["topic"], step["partitions"], replication=step.get("replication", 1))
            wait_partitions(bootstrap, step["topic"], step["partitions"])
        fn = produce_confluent if client == "confluent" else produce_kafka_python
        return fn(bootstrap, step["topic"], step["size"], step["acks"], step["count"], step["seconds"])
    if kind == "consume":
        fn2 = consume_confluent if client == "confluent" else consume_kafka_python
        # Best of N reads of the same data: one read is at the mercy of whatever else the
        # two CPUs are doing (page-cache writeback of what was just produced, for one).
        runs = [fn2(bootstrap, step["topic"], step["partitions"], step["expect"], step["seconds"])
                for _ in range(max(1, step.get("repeat", 1)))]
        best = max(runs, key=lambda r: (not r.get("error"), rate_of(r)))
        return {**best, "runs_msgs_per_s": [round(rate_of(r)) for r in runs]}
    if kind == "e2e":
        create_topic(bootstrap, step["topic"], 1)
        wait_partitions(bootstrap, step["topic"], 1)
        return e2e(bootstrap, client, step["topic"], step["rate"], step["seconds"], step["size"])
    if kind == "rtt":
        create_topic(bootstrap, step["topic"], 1)
        wait_partitions(bootstrap, step["topic"], 1)
        return rtt(bootstrap, client, step["topic"], step["count"], step["size"])
    if kind == "poll":
        create_topic(bootstrap, step["topic"], step.get("partitions", 4))
        wait_partitions(bootstrap, step["topic"], step.get("partitions", 4))
        return poll_loop(bootstrap, step["topic"], step["count"], step["size"], step["seconds"])
    if kind == "cpu":
        from tools.bench.rawapi import cpu_per_request

        host, _, port = bootstrap.rpartition(":")
        return cpu_per_request(host or HOST_DEFAULT, int(port), step.get("pid"), step["apis"], step["count"],
                               step["warmup"], step["seconds"], step["tag"])
    if kind == "conns":
        host, _, port = bootstrap.rpartition(":")
        return produce_with_connections(host or HOST_DEFAULT, int(port), step.get("pid"), step["modes"],
                                        step["count"], step["warmup"], step["seconds"], step["idle"],
                                        step["fetchers"], step["max_wait_ms"], step["tag"])
    if kind == "idle":
        host, _, port = bootstrap.rpartition(":")
        return idle_connections(host or HOST_DEFAULT, int(port), step["count"], step["hold"])
    if kind == "many":
        return many_partitions(bootstrap, step["topic"], step["partitions"], step["timeout"])
    if kind == "delete":
        return delete_under_load(bootstrap, step["topic"], step["probe_topic"], step["timeout"],
                                 step.get("baseline", 1.0), step.get("tail", 1.0))
    if kind == "fill":
        create_topic(bootstrap, step["topic"], step["partitions"])
        wait_partitions(bootstrap, step["topic"], step["partitions"])
        return fill(bootstrap, step["topic"], step["partitions"], step["bytes"], step["size"], step["timeout"])
    if kind == "keyed_fill":
        create_topic(bootstrap, step["topic"], 1, config=step.get("config"))
        wait_partitions(bootstrap, step["topic"], 1)
        return fill(bootstrap, step["topic"], 1, step["bytes"], step["size"], step["timeout"], keys=step["keys"])
    if kind == "alter":
        return alter_topic(bootstrap, step["topic"], step["config"])
    if kind == "rtt_until":
        create_topic(bootstrap, step["topic"], 1)
        wait_partitions(bootstrap, step["topic"], 1)
        return rtt_until(bootstrap, step["topic"], step["stop_file"], step["max_seconds"], step["size"])
    raise ValueError(f"unknown step kind {kind!r}")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    bootstrap = spec["bootstrap"]
    done: dict[str, Result] = {}
    for step in spec["steps"]:
        started = time.perf_counter()
        source = step.get("expect_from")
        if source is not None:
            step = dict(step, expect=done.get(source, {}).get("msgs") or 0)
        try:
            if source is not None and not step["expect"]:
                result: Result = {"msgs": 0, "error": f"skipped: nothing was produced by {source}"}
            else:
                result = run_step(bootstrap, step)
        except Exception as e:
            result = {"error": short_error(e)}
        result["id"] = step["id"]
        result["wall_s"] = time.perf_counter() - started
        done[step["id"]] = result
        emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
