"""The handler registry seen from a running broker: start-up fails on a missing handler
module, and ApiVersions on the wire advertises the pinned table."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from socket_helpers import read_frame
from test_handler_registry import ADVERTISED

from kbroker import handlers
from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    handlers.registry.cache_clear()
    yield
    handlers.registry.cache_clear()


def test_missing_handler_module_fails_broker_start(monkeypatch: pytest.MonkeyPatch, fresh_registry: None,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(handlers, "MODULES", [*handlers.MODULES, "no_such_api"])
    with pytest.raises(RuntimeError, match="failed to start"), BrokerThread(tmp_path / "d"):
        pass




@pytest.mark.parametrize("version", [0, 3])
def test_api_versions_response_on_the_wire_is_the_pinned_table(kafka_broker: BrokerThread,
                                                                version: int) -> None:
    body = {"client_software_name": "t", "client_software_version": "1"} if version >= 3 else {}
    with socket.create_connection(("127.0.0.1", kafka_broker.port), timeout=5) as s:
        s.sendall(encode_request(18, version, 7, body))
        cid, resp = decode_response(18, version, read_frame(s))
    assert cid == 7 and resp.error_code == 0
    assert {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys} == ADVERTISED
