"""Listener addresses: what is bound and what clients are told."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaProducer

from kbroker.broker import host_name
from kbroker.config import BrokerConfig, ConfigError
from kbroker.testing import BrokerThread


def _resolvable(host: str) -> bool:
    try:
        return bool(socket.getaddrinfo(host, None))
    except OSError:
        return False


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_all_interfaces_listener_advertises_the_host_name(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"listeners": "PLAINTEXT://:0"}) as b:
        host, port = b.broker.endpoints["PLAINTEXT"]
        assert host == host_name() and host not in ("", "0.0.0.0", "::")
        if not _resolvable(host):
            pytest.skip(f"{host} does not resolve here")
        # A client bootstraps from the loopback address and follows the advertised name.
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", linger_ms=0)
        try:
            producer.send("t", value=b"v", partition=0).get(20)
        finally:
            producer.close(5)


@pytest.mark.parametrize("props", [
    {"listeners": "PLAINTEXT://0.0.0.0:9092"},
    {"listeners": "PLAINTEXT://[::]:9092"},
    {"listeners": "PLAINTEXT://0.0.0.0:9092,OTHER://127.0.0.1:9093",
     "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
     "advertised.listeners": "OTHER://127.0.0.1:9093"},
])
def test_wildcard_listener_without_advertised_address_is_refused(props: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="cannot be advertised.*advertised.listeners"):
        BrokerConfig(props)


def test_wildcard_listener_with_advertised_address_is_accepted() -> None:
    config = BrokerConfig({"listeners": "PLAINTEXT://0.0.0.0:9092",
                           "advertised.listeners": "PLAINTEXT://broker.example:9092"})
    assert config.advertised_listeners[0].host == "broker.example"


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_localhost_listener_serves_ipv4_and_ipv6_loopback(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "d", {"listeners": "PLAINTEXT://localhost:0"}) as b:
        port = b.port
        for address in ("127.0.0.1", "::1"):
            with socket.create_connection((address, port), timeout=10):
                pass
        # librdkafka bootstraps over IPv6 (as when localhost resolves to ::1 first).
        producer = Producer({"bootstrap.servers": f"[::1]:{port}", "linger.ms": 0})
        producer.produce("t6", value=b"v6", partition=0)
        assert producer.flush(20) == 0
        consumer = Consumer({"bootstrap.servers": f"[::1]:{port}", "group.id": "g",
                             "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition("t6", 0, 0)])
            message = None
            for _ in range(100):
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    break
            assert message is not None and message.value() == b"v6"
        finally:
            consumer.close()
