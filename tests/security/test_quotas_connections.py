"""Connection limits over real sockets: a listener's ``max.connections`` stops accepting,
``max.connection.creation.rate`` (broker-wide, per listener, changed at runtime) delays
accepting, and an address over its ``connection_creation_rate`` quota is closed unserved."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from kbroker.client import admin
from kbroker.client.cluster import KafkaClient
from kbroker.codec import encode_request
from kbroker.testing import BrokerThread

pytestmark = pytest.mark.integration

#: 2 samples of 1 s: a rate is measured over about a second, so tests stay short.
WINDOWS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def served(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether an ApiVersions request on ``sock`` is answered within ``timeout``; False
    when it is not (or the broker closed the connection)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(encode_request(18, 0, 1, {}))
        head = sock.recv(4)
    except OSError:  # timed out, or closed by the broker
        return False
    return len(head) == 4


def time_to_serve(port: int, n: int) -> float:
    """Seconds to open ``n`` connections one after another and have each answered once."""
    started = time.monotonic()
    for _ in range(n):
        with connect(port) as s:
            assert served(s, 10)
    return time.monotonic() - started


def test_listener_max_connections_stops_accepting_until_one_closes(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", {"listener.name.plaintext.max.connections": "2"}) as broker:
        first, second = connect(broker.port), connect(broker.port)
        assert served(first) and served(second)
        third = connect(broker.port)  # the kernel's backlog takes it; the broker does not
        assert not served(third, 1.0)
        assert broker.broker.quotas.per_listener["PLAINTEXT"] == 2
        first.close()
        third.settimeout(5)
        assert len(third.recv(4)) == 4  # the request sent before is answered once it is taken
        second.close()
        third.close()


def test_max_connection_creation_rate_delays_accepting_and_changes_at_runtime(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", WINDOWS) as broker:
        assert time_to_serve(broker.port, 12) < 1.5  # no limit
        with KafkaClient(broker.bootstrap) as client:
            node = str(broker.broker.node_id)
            body = {"resources": [{"resource_type": 4, "resource_name": node, "configs": [
                {"name": "max.connection.creation.rate", "config_operation": 0, "value": "4"}]}],
                "validate_only": False}
            resp = client.request(44, body)
            assert resp.responses[0].error_code == 0
        time.sleep(2.1)  # past the connections measured so far
        # 4 per second over a window of about a second: 12 connections take over 1.5 s.
        assert time_to_serve(broker.port, 12) > 1.5
        with KafkaClient(broker.bootstrap) as client:
            body["resources"][0]["configs"][0]["value"] = "100000"
            assert client.request(44, body).responses[0].error_code == 0
        time.sleep(2.1)
        assert time_to_serve(broker.port, 12) < 1.5


def test_listener_max_connection_creation_rate(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", {**WINDOWS, "listener.name.plaintext.max.connection.creation.rate": "4"}
                      ) as broker:
        assert time_to_serve(broker.port, 12) > 1.5


def test_ip_connection_creation_rate_closes_connections_over_it(tmp_path: Path) -> None:
    with BrokerThread(tmp_path / "data", WINDOWS) as broker:
        with KafkaClient(broker.bootstrap) as client:
            admin.alter_client_quotas(client, {"ip": "127.0.0.1"}, {"connection_creation_rate": 3})
        time.sleep(2.1)  # past the connections measured so far
        results = []
        for _ in range(6):
            with connect(broker.port) as s:
                results.append(served(s, 3.0))
        assert results[:3] == [True, True, True]
        assert False in results[3:]  # refused: closed unserved after its throttle time
        time.sleep(2.1)
        with KafkaClient(broker.bootstrap) as client:
            admin.alter_client_quotas(client, {"ip": "127.0.0.1"}, {}, ["connection_creation_rate"])
        time.sleep(2.1)
        assert time_to_serve(broker.port, 8) < 1.5


def test_listener_limits_change_at_runtime_and_are_kept(tmp_path: Path) -> None:
    key = "listener.name.plaintext.max.connections"
    with BrokerThread(tmp_path / "data") as broker:
        with KafkaClient(broker.bootstrap) as client:
            node = str(broker.broker.node_id)

            def set_broker_config(name: str, value: str | None) -> tuple[int, str | None]:
                op = {"name": name, "config_operation": 0 if value is not None else 1, "value": value}
                resp = client.request(44, {"resources": [{"resource_type": 4, "resource_name": node,
                                                          "configs": [op]}], "validate_only": False})
                return resp.responses[0].error_code, resp.responses[0].error_message

            assert set_broker_config(key, "2") == (0, None)
            code, message = set_broker_config("listener.name.plaintext.connections.max.reauth.ms", "1000")
            assert code != 0 and "dynamically" in (message or "")
        assert broker.broker.config.listener_get("PLAINTEXT", "max.connections") == 2
        first, second = connect(broker.port), connect(broker.port)
        assert served(first) and served(second)
        third = connect(broker.port)
        assert not served(third, 1.0)
        first.close()
        third.settimeout(5)
        assert len(third.recv(4)) == 4
        second.close()
        third.close()
    with BrokerThread(tmp_path / "data") as broker:  # kept with the dynamic broker configs
        assert broker.broker.config.listener_get("PLAINTEXT", "max.connections") == 2
        with KafkaClient(broker.bootstrap) as client:
            resp = client.request(44, {"resources": [{"resource_type": 4, "resource_name": str(broker.broker.node_id),
                                                      "configs": [{"name": key, "config_operation": 1,
                                                                   "value": None}]}], "validate_only": False})
            assert resp.responses[0].error_code == 0
        assert broker.broker.config.listener_get("PLAINTEXT", "max.connections") == 2**31 - 1
