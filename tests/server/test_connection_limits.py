"""Connection limits: running out of file descriptors, max.connections and max.connections.per.ip."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import pytest
from broker_process import BrokerProcess
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from socket_helpers import read_frame
from wait_helpers import wait_until

from kbroker.codec import decode_response, encode_request
from kbroker.config import BrokerConfig, ConfigError
from kbroker.testing import BrokerThread


def _api_versions(s: socket.socket, correlation_id: int = 1) -> None:
    """Send ApiVersions v0 on ``s`` and check the answer."""
    s.sendall(encode_request(18, 0, correlation_id, {}))
    cid, body = decode_response(18, 0, read_frame(s))
    assert cid == correlation_id and body.error_code == 0




def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def _produce_consume(bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        producer.send(topic, value=b"after", partition=0).get(20)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=200).values():
                got.extend(r.value for r in recs)
        assert got == [b"after"]
    finally:
        producer.close(5)
        consumer.close()


FD_LIMIT = 128


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_broker_survives_running_out_of_file_descriptors(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "d", preexec_fn=_low_fd_limit) as broker:
        host, port = broker.bootstrap.split(":")
        sockets: list[socket.socket] = []
        try:
            # More idle connections than the broker has descriptors: accept() fails with EMFILE.
            for _ in range(2 * FD_LIMIT):
                sockets.append(socket.create_connection((host, int(port)), timeout=10))
            wait_until(lambda: broker.proc is not None and (
                broker.proc.poll() is not None or any("cannot accept" in line for line in broker.output)), 20)
            assert broker.proc is not None and broker.proc.poll() is None, "".join(broker.output[-40:])
        finally:
            for s in sockets:
                s.close()
        _produce_consume(broker.bootstrap, "after-emfile")
        assert broker.proc.poll() is None
        assert sum("cannot accept" in line for line in broker.output) == 1  # logged once, not per retry


@pytest.fixture
def limited(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    with BrokerThread(tmp_path / "d", request.param) as b:
        yield b


@pytest.mark.parametrize("limited", [{"max.connections.per.ip": "2"},
                                     {"max.connections.per.ip.overrides": "127.0.0.1:2"},
                                     {"max.connections.per.ip.overrides": "localhost:2,10.0.0.1:9"}], indirect=True)
def test_connections_over_the_per_ip_limit_are_closed_at_once(limited: BrokerThread) -> None:
    first = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    second = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    _api_versions(first)
    _api_versions(second)
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as third:
        assert _closed(third)
    first.close()
    wait_until(lambda: limited.broker.quotas.total == 1, 20)
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as again:
        _api_versions(again)
    second.close()


@pytest.mark.parametrize("limited", [{"max.connections": "2"}], indirect=True)
def test_at_max_connections_the_broker_accepts_once_one_closes(limited: BrokerThread) -> None:
    first = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    second = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    _api_versions(first)
    _api_versions(second)
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as third:
        third.sendall(encode_request(18, 0, 3, {}))
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):  # waits in the backlog, as with Kafka
            third.recv(1)
        third.settimeout(10)
        first.close()
        cid, _ = decode_response(18, 0, read_frame(third))
        assert cid == 3
    second.close()


def _low_soft_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, 4 * FD_LIMIT))


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
def test_serve_raises_the_soft_fd_limit_to_the_hard_limit(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "d", preexec_fn=_low_soft_fd_limit) as broker:
        assert broker.proc is not None
        limits = Path(f"/proc/{broker.proc.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(4 * FD_LIMIT), str(4 * FD_LIMIT)], line


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:x", ":5", "h:-1"])
def test_malformed_per_ip_overrides_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="max.connections.per.ip.overrides"):
        BrokerConfig({"max.connections.per.ip.overrides": value})
