"""The console's core: served only when configured, the overview shows the broker as it is, the
live stream reports what real clients produce and consume, and nothing of it runs (no
interceptor, no sampling) while nobody watches."""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

from kbroker.broker import StartupError
from kbroker.cli import serve
from kbroker.console.live import FetchCounter, Live, human_bytes, sse_event
from kbroker.console.overview import uptime_text
from kbroker.console.svg import sparkline
from kbroker.testing import BrokerThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(overrides={"console.port": "0"}) as b:
        yield b


def url(b: BrokerThread, path: str = "/") -> str:
    return f"http://127.0.0.1:{b.broker.console.port}{path}"


def text_of(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)<', html, re.S)
    assert m, f"no #{element_id}"
    return m.group(1).strip()


def counters(b: BrokerThread) -> list[FetchCounter]:
    return [i for i in b.broker.interceptors if isinstance(i, FetchCounter)]


def read_events(response: httpx.Response, names: set[str], until: float) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of an SSE response, those named in ``names``, until the deadline."""
    event, data = "", []
    for line in response.iter_lines():
        assert time.monotonic() < until, "the stream did not say what was expected in time"
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            if event in names:
                yield event, "\n".join(data)
            event, data = "", []


def test_the_overview_shows_the_broker_and_what_clients_created(broker: BrokerThread) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    before = int(text_of(httpx.get(url(broker)).text, "partition-count"))
    for f in admin.create_topics([NewTopic("overview-a", 4, 1)]).values():
        f.result(10)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(20):
        producer.send("overview-a", b"x" * 1000, partition=i % 4)
    producer.flush(10)
    producer.close()
    r = httpx.get(url(broker))
    assert r.status_code == 200
    html = r.text
    from kbroker import __version__
    assert text_of(html, "broker-version") == __version__
    assert int(text_of(html, "partition-count")) == before + 4
    host, port = broker.bootstrap.split(":")
    assert f"PLAINTEXT://{host}:{port}" in re.search(r'id="listeners">(.*?)</ul>', html, re.S).group(1)
    row = re.search(r'<tr data-broker-id="1">(.*?)</tr>', html, re.S)
    assert row and port in row.group(1) and "controller" in row.group(1)
    # Disk use counts the log bytes written (20 records of 1000 bytes, and batch overhead).
    disk = text_of(html, "disk-use")
    assert disk.endswith("KiB") and float(disk.split()[0]) >= 20000 / 1024
    assert re.fullmatch(r"\d+s|\d+m \d+s", text_of(html, "uptime"))
    # The nav and the live hooks the browser uses.
    assert 'sse-connect="/live/overview"' in html and 'sse-swap="throughput-in"' in html


def test_the_live_stream_reports_throughput_only_while_watched(broker: BrokerThread) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("live-a", 1, 1)]).values():
        f.result(10)
    # Nobody watches: no counter among the interceptors, no sampling done.
    assert counters(broker) == []
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    consumer = KafkaConsumer("live-a", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             fetch_max_wait_ms=100)
    seen_in = seen_out = False
    with httpx.Client(timeout=10) as http, http.stream("GET", url(broker, "/live/overview")) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        deadline = time.monotonic() + 15
        # Held in a name: a line iterator dropped closes its response (and the server sees the viewer leave).
        events = read_events(stream, {"throughput-in", "throughput-out", "throughput-chart"}, deadline)
        for event, data in events:
            assert len(counters(broker)) == 1  # installed while the stream is open
            if event == "throughput-in":
                seen_in = seen_in or not data.startswith("0 B")
            elif event == "throughput-out":
                seen_out = seen_out or not data.startswith("0 B")
            elif event == "throughput-chart":
                assert data.startswith('<svg id="throughput-chart"')
            if seen_in and seen_out:
                break
            for _ in range(5):
                producer.send("live-a", b"y" * 2000)
            producer.flush(10)
            consumer.poll(200)
        assert seen_in and seen_out
        # A second viewer shares the one counter.
        with http.stream("GET", url(broker, "/live/overview")) as second:
            second_events = read_events(second, {"throughput-in"}, time.monotonic() + 10)
            next(second_events)
            assert len(counters(broker)) == 1
    producer.close()
    consumer.close()
    # Both viewers gone: the counter is removed and the history forgotten.
    deadline = time.monotonic() + 10
    while counters(broker):
        assert time.monotonic() < deadline, "the counter stayed after the last viewer left"
        time.sleep(0.05)


def test_the_fetch_counter_counts_consumers_not_followers() -> None:
    import asyncio
    import uuid

    from kbroker.handlers.api import Session
    from kbroker.server.intercept import Exchange

    topic_id = uuid.uuid4()
    counter = FetchCounter(lambda i: "t" if i == topic_id else None)

    def exchange(version: int, replica_id: int) -> Exchange:
        request = {"replica_id": replica_id, "replica_state": {"replica_id": replica_id}}
        return Exchange(Session("L", "h", 1), 1, version, 1, None, request, 0, 0.0)

    async def fetch(version: int, replica_id: int, topic: dict[str, object]) -> None:
        async def handle() -> object:
            return {"responses": [{**topic, "partitions": [{"records": b"x" * 10}, {"records": None}]}]}
        await counter(exchange(version, replica_id), handle)

    asyncio.run(fetch(12, -1, {"topic": "t"}))
    asyncio.run(fetch(13, -1, {"topic_id": topic_id}))
    asyncio.run(fetch(15, 2, {"topic_id": topic_id}))  # a follower: replication, not consumption
    asyncio.run(fetch(13, -1, {"topic_id": uuid.uuid4()}))  # deleted meanwhile: not counted
    assert counter.bytes_out == {"t": 20} and counter.total == 20


def test_sampling_is_bounded_to_once_a_second() -> None:
    import uuid

    now = [100.0]

    class Logs:
        def __init__(self) -> None:
            self.size = 0

        def all_logs(self) -> dict[object, object]:
            from kbroker.common import TopicPartition

            class Log:
                size_in_bytes = self.size
                log_end_offset = self.size // 10
            # Partition 1 is a follower's copy here: its growth is replication, not bytes in.
            return {TopicPartition("t", 0): Log(), TopicPartition("t", 1): Log()}

    logs = Logs()

    from kbroker.metadata.model import PartitionInfo, TopicInfo

    class Metadata:
        topics = {"t": TopicInfo("t", uuid.uuid4(), {0: PartitionInfo("t", 0, 1, 0, [1], [1]),
                                                  1: PartitionInfo("t", 1, 2, 0, [2, 1], [2, 1])})}

    class Services:
        log_manager = logs
        metadata = Metadata()
        node_id = 1

    class Backend:
        services = Services()

    live = Live(Backend(), clock=lambda: now[0])  # type: ignore[arg-type]
    first = live.sample()
    logs.size = 5000
    assert live.sample() is first  # asked again within the second: the same figures
    now[0] += 2
    second = live.sample()
    assert second.bytes_in_rate == 2500 and list(live.history) == [(2500, 0)]
    logs.size = 1000  # retention removed a segment: no negative throughput
    now[0] += 1
    assert live.sample().bytes_in_rate == 0


def test_the_console_is_not_loaded_unless_configured(tmp_path: Path) -> None:
    code = ("import sys\nfrom kbroker.testing import BrokerThread\n"
            "with BrokerThread() as b:\n    assert b.broker.console is None\n"
            "assert not [m for m in sys.modules if m.startswith('kbroker.console')], 'console imported'\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr


def test_a_taken_console_port_stops_start_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(RuntimeError) as info:
            BrokerThread(overrides={"console.port": str(port)}).start()
    cause = info.value.__cause__
    assert isinstance(cause, StartupError) and f"cannot serve the console on 127.0.0.1:{port}" in str(cause)


def test_a_bad_console_port_is_a_config_error() -> None:
    from kbroker.config import ConfigError

    with pytest.raises(ConfigError, match="console.port"):
        BrokerThread(overrides={"console.port": "70000"})


@pytest.mark.parametrize(("argv", "configured", "expected"), [
    ([], None, None),
    (["--console"], None, 9021),
    (["--console", "0"], None, 0),
    (["--console"], "8123", 8123),  # a bare --console keeps a configured port
    (["--console", "8124"], "8123", 8124),  # an explicit one wins
])
def test_serve_console_option(argv: list[str], configured: str | None, expected: int | None,
                              tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    overrides = [f"console.port={configured}"] if configured else []
    args = parser.parse_args(["serve", "--data-dir", str(tmp_path), *argv,
                              *[x for o in overrides for x in ("--override", o)]])
    assert serve.build_config(args).get("console.port") == expected
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--console", "x"])


def test_kbroker_serve_prints_the_console_url(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "kbroker", "serve", "--port", "0", "--data-dir", str(tmp_path),
                             "--console", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        console_url = None
        while console_url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.match(r"console on (http://127\.0\.0\.1:\d+/)", line)
            if m:
                console_url = m.group(1)
        assert console_url, "no console URL printed"
        assert "broker-version" in httpx.get(console_url, timeout=10).text
    finally:
        proc.terminate()
        proc.wait(20)


def test_sparkline_svg() -> None:
    svg = str(sparkline([[0, 5, 10], [1]], width=100, height=20, labels=("in", "<out>"), element_id="x"))
    assert svg.startswith('<svg id="x" class="spark" width="100" height="20"') and 'data-peak="10"' in svg
    lines = re.findall(r'points="([^"]*)"', svg)
    assert lines[0] == "0.0,19.0 50.0,10.0 100.0,1.0"  # 0 at the bottom, the peak at the top
    assert lines[1] == "0.0,17.2 100.0,17.2"  # one point: drawn flat
    assert "&lt;out&gt;" in svg and "<out>" not in svg
    assert 'points="0.0,19.0 100.0,19.0"' in str(sparkline([[]], width=100, height=20))  # nothing yet: flat at 0


def test_small_formatters() -> None:
    assert [uptime_text(s) for s in (5, 65, 3700, 90000)] == ["5s", "1m 5s", "1h 1m", "1d 1h"]
    assert [human_bytes(n) for n in (10, 2048, 3 * 1024**3)] == ["10 B", "2.0 KiB", "3.0 GiB"]
    assert sse_event("e", "a\nb") == "event: e\ndata: a\ndata: b\n\n"


def test_open_streams_do_not_hold_up_shutdown() -> None:
    import threading

    b = BrokerThread(overrides={"console.port": "0"}).start()
    ended: list[str] = []
    opened = threading.Event()

    def watch(path: str) -> None:
        with httpx.stream("GET", f"http://127.0.0.1:{b.broker.console.port}{path}", timeout=30) as r:
            for _ in r.iter_lines():
                opened.set()
        ended.append(path)

    b.call(lambda: b.broker.metadata.create_topic("s", 1, 1))
    paths = ["/live/overview", "/live/topics/s", "/live/topics/s/messages?from=0:0"]
    threads = [threading.Thread(target=watch, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()
    assert opened.wait(10)
    time.sleep(0.3)
    started = time.monotonic()
    b.stop()
    assert time.monotonic() - started < 3  # the streams end with the broker instead of being waited out
    for t in threads:
        t.join(5)
    assert sorted(ended) == sorted(paths)
