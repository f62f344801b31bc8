"""The Prometheus endpoint, scraped after real clients produced, consumed and committed: its
numbers match what was sent; errors are counted by API; /health follows the broker's state."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import Producer as CKProducer
from confluent_kafka import TopicPartition as CKTopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client.parser import text_string_to_metric_families

from kbroker.broker import Broker, StartupError
from kbroker.codec.apis import api_table
from kbroker.records.builder import NewRecord, build_batch
from kbroker.server import metrics
from kbroker.server.intercept import Exchange, Handle
from kbroker.server.metrics import BrokerMetrics, MetricsSources, record_count
from kbroker.testing import BrokerThread, make_config
from tests.server.broker_process import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


class Recording:
    """Counts requests served by (API name, version), independently of the metrics."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()

    async def __call__(self, ex: Exchange, handle: Handle) -> Any:
        body = await handle()
        self.seen[(api_table()[ex.api_key].name, str(ex.api_version))] += 1
        return body


def wait_for_connections(port: int, n: int) -> None:
    deadline = time.monotonic() + 10
    while (now := value(scrape(port), "kbroker_connections", listener="PLAINTEXT")) != n:
        assert time.monotonic() < deadline, f"{now} connections counted, {n} expected"
        time.sleep(0.02)


def segment_bytes(data_dir: Path, topic: str, partition: int) -> int:
    return sum(f.stat().st_size for f in (data_dir / f"{topic}-{partition}").glob("*.log"))


def test_a_scrape_matches_what_clients_produced_consumed_and_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "d"
    rec = Recording()
    with BrokerThread(data, {"metrics.port": "0"}) as broker, \
            BrokerThread(tmp_path / "other", {"metrics.port": "0"}) as other:
        port = broker.broker.metrics.port
        broker.broker.interceptors.add(rec)  # innermost: sees what the metrics see
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("m", 1, 1)])
        admin.close()
        # Produce v9 (names) from kafka-python, the newest version (topic ids) from librdkafka.
        kp = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        for i in range(7):
            kp.send("m", b"k%d" % i, b"v" * (10 + i)).get(10)
        kp.close()
        cp = CKProducer({"bootstrap.servers": broker.bootstrap})
        for i in range(3):
            cp.produce("m", b"x" * 100, key=b"c%d" % i)
        assert cp.flush(10) == 0
        del cp  # librdkafka closes its connections when the producer is destroyed
        consumer = CKConsumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False,
                               "auto.offset.reset": "earliest"})
        consumer.subscribe(["m"])
        got = 0
        for _ in range(100):
            got += len(consumer.consume(10, 0.5))
            if got >= 10:
                break
        assert got == 10
        # 4 of the 10 consumed as far as the group is concerned: a lag of 6.
        consumer.commit(offsets=[CKTopicPartition("m", 0, 4)], asynchronous=False)
        consumer.close()

        s = scrape(port)
        on_disk = segment_bytes(data, "m", 0)
        assert on_disk > 0
        assert value(s, "kbroker_topic_in_messages_total", topic="m") == 10
        assert value(s, "kbroker_topic_in_bytes_total", topic="m") == on_disk
        assert value(s, "kbroker_log_size_bytes", topic="m") == on_disk
        assert value(s, "kbroker_topic_out_bytes_total", topic="m") == on_disk  # read once, whole
        assert value(s, "kbroker_consumer_group_lag", group="g", topic="m", partition="0") == 6
        assert value(s, "kbroker_consumer_group_lag_omitted") == 0
        assert value(s, "kbroker_replication_out_bytes_total") == 0
        # Every partition hosted here (m-0 and the offsets topic's), all led here.
        assert value(s, "kbroker_partitions") == value(s, "kbroker_leader_partitions") == 1 + 50
        # Requests per API and version, as an interceptor of its own counted them.
        requests = {(dict(k)["api"], dict(k)["version"]): v for k, v in series(s, "kbroker_requests_total").items()}
        assert requests == dict(rec.seen)
        assert {("Produce", v) for v in ("9",)} <= requests.keys() and any(
            api == "Produce" and v != "9" for api, v in requests)  # both clients' versions
        for api in {a for a, _ in requests}:
            count = sum(n for (a, _), n in requests.items() if a == api)
            assert value(s, "kbroker_request_duration_seconds_count", api=api) == count
            assert value(s, "kbroker_request_duration_seconds_bucket", api=api, le="+Inf") == count
            assert value(s, "kbroker_request_duration_seconds_bucket", api=api, le="0.0005") <= count
            assert 0 < value(s, "kbroker_request_duration_seconds_sum", api=api) < 60
        assert value(s, "process_resident_memory_bytes") is not None or sys.platform != "linux"

        # Connections: none once the clients closed theirs (the broker sees the close soon
        # after), then the one open now; the other broker's registry saw none of this.
        wait_for_connections(port, 0)
        with socket.create_connection(("127.0.0.1", broker.port)):
            wait_for_connections(port, 1)
        s_other = scrape(other.broker.metrics.port)
        assert value(s_other, "kbroker_topic_in_bytes_total", topic="m") is None
        assert value(s_other, "kbroker_log_size_bytes", topic="m") is None

        # At most MAX_LAG_SERIES lag series per scrape; the rest are counted.
        monkeypatch.setattr(metrics, "MAX_LAG_SERIES", 0)
        s = scrape(port)
        assert series(s, "kbroker_consumer_group_lag") == {}
        assert value(s, "kbroker_consumer_group_lag_omitted") == 1


def test_errors_are_counted_by_api_version_and_code(tmp_path: Path) -> None:
    async def failing_list_groups(ex: Exchange, handle: Handle) -> Any:
        if ex.api_key == 16:  # ListGroups
            raise RuntimeError("a handler bug")  # the client gets UNKNOWN_SERVER_ERROR
        return await handle()

    with BrokerThread(tmp_path / "d", {"metrics.port": "0"}) as broker:
        port = broker.broker.metrics.port
        broker.broker.interceptors.add(failing_list_groups)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic("small", 1, 1, topic_configs={"max.message.bytes": "200"})])
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic("small", 1, 1)])
        with pytest.raises(KafkaError):
            admin.list_groups()
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0)
        producer.send("small", b"ok").get(10)
        with pytest.raises(KafkaError):
            producer.send("small", b"x" * 1000).get(10)  # MESSAGE_TOO_LARGE: not appended
        producer.close()
        # A fetch past the log end: OFFSET_OUT_OF_RANGE at the partition level, then the reset.
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
        tp = TopicPartition("small", 0)
        consumer.assign([tp])
        consumer.seek(tp, 100)
        got = []
        for _ in range(50):
            got += consumer.poll(200).get(tp, [])
            if got:
                break
        consumer.close()
        assert [r.value for r in got] == [b"ok"]

        s = scrape(port)
        errors = series(s, "kbroker_request_errors_total")
        by_api: Counter[tuple[str, str]] = Counter()
        for labels, n in errors.items():
            by_api[(dict(labels)["api"], dict(labels)["error"])] += int(n)
        assert by_api[("CreateTopics", "TOPIC_ALREADY_EXISTS")] == 1
        assert by_api[("Produce", "MESSAGE_TOO_LARGE")] == 1
        list_groups = sum(v for k, v in series(s, "kbroker_requests_total").items() if dict(k)["api"] == "ListGroups")
        assert list_groups >= 1 and by_api[("ListGroups", "UNKNOWN_SERVER_ERROR")] == list_groups
        assert by_api[("Fetch", "OFFSET_OUT_OF_RANGE")] >= 1
        assert {api for api, _ in by_api} == {"CreateTopics", "Produce", "ListGroups", "Fetch"}
        # Only the appended record counts as bytes in.
        assert value(s, "kbroker_topic_in_messages_total", topic="small") == 1
        assert value(s, "kbroker_topic_in_bytes_total", topic="small") == segment_bytes(tmp_path / "d", "small", 0)

        # A deleted topic's series go with it, as Kafka removes its topic metrics.
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.delete_topics(["small"])
        admin.close()
        s = scrape(port)
        for name in ("kbroker_topic_in_bytes_total", "kbroker_topic_in_messages_total", "kbroker_log_size_bytes"):
            assert value(s, name, topic="small") is None, name


def test_health_answers_200_only_while_serving() -> None:
    state = {"now": "starting"}
    sources = MetricsSources(node_id=7, status=lambda: state["now"], partitions=lambda: [], connections=dict,
                             committed_offsets=lambda: [], high_watermark=lambda t, p: None,
                             topic_name=lambda i: None)

    async def main() -> None:
        m = BrokerMetrics(sources, "127.0.0.1", 0)
        async with anyio.create_task_group() as tg:
            await m.start(tg)
            async with httpx.AsyncClient() as client:
                for now, code in (("starting", 503), ("serving", 200), ("stopping", 503)):
                    state["now"] = now
                    r = await client.get(f"http://127.0.0.1:{m.port}/health")
                    assert (r.status_code, r.json()) == (code, {"status": now, "node_id": 7})
                assert (await client.post(f"http://127.0.0.1:{m.port}/health")).status_code == 405
            await m.stop()

    anyio.run(main)


def test_the_broker_reports_starting_serving_then_stopping(tmp_path: Path) -> None:
    async def main() -> None:
        broker = Broker(make_config(tmp_path / "d", {"metrics.port": "0"}))
        assert broker.metrics is not None
        status = broker.metrics.sources.status
        assert status() == "starting"
        async with broker.running():
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{broker.metrics.port}/health")
            assert (r.status_code, r.json()) == (200, {"status": "serving", "node_id": 1})
            await broker.shutdown()
            assert status() == "stopping"
        with pytest.raises(httpx.ConnectError):  # the endpoint stopped with the broker
            async with httpx.AsyncClient() as client:
                await client.get(f"http://127.0.0.1:{broker.metrics.port}/health")

    anyio.run(main)


def test_a_taken_metrics_port_fails_start_up_and_leaves_the_data_usable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            broker = Broker(make_config(tmp_path / "d", {"metrics.port": str(port)}))
            with pytest.raises(StartupError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
                async with broker.running():
                    pytest.fail("started with its metrics port taken")

        anyio.run(main)
    with BrokerThread(tmp_path / "d") as broker:  # the log dirs were released
        assert broker.broker.metrics is None


def _imported_after(code: str) -> set[str]:
    watched = ("prometheus_client", "starlette", "uvicorn", "kbroker.server.metrics")
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {watched!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("port", [None, "0"])
def test_without_metrics_port_nothing_of_them_is_imported(tmp_path: Path, port: str | None) -> None:
    overrides = {"log.dirs": str(tmp_path / "d")} | ({"metrics.port": port} if port else {})
    built = _imported_after(
        "from kbroker.broker import Broker\nfrom kbroker.config import BrokerConfig\n"
        f"b = Broker(BrokerConfig({overrides!r}))\nb.log_manager.shutdown()")
    # uvicorn comes when the endpoint starts.
    assert built == (set() if port is None else {"prometheus_client", "starlette", "kbroker.server.metrics"})


def test_record_count_reads_every_batch() -> None:
    one = build_batch([NewRecord(b"k", b"v"), NewRecord(None, b"w")])
    two = build_batch([NewRecord(None, b"x")] * 3, base_offset=2)
    assert record_count(one) == 2
    assert record_count(one + two) == 5
    assert record_count(memoryview(one + two)) == 5
    assert record_count(one + two[:20]) == 2  # a torn tail is not counted
    assert record_count(b"") == 0


def test_kbroker_serve_says_where_its_metrics_are(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "d", "metrics.port=0") as proc:
        deadline = time.monotonic() + 10
        while not (found := [m for line in proc.output if (m := re.search(r"metrics on (http://\S+)/metrics", line))]):
            assert time.monotonic() < deadline, "".join(proc.output)
            time.sleep(0.02)
        base = found[0].group(1)
        assert httpx.get(f"{base}/health", timeout=10).json() == {"status": "serving", "node_id": 1}
        assert "kbroker_partitions 0.0" in httpx.get(f"{base}/metrics", timeout=10).text
        assert proc.terminate() == 0
