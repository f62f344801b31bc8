"""Fault rules as a careless or hostile user sends them: values past what Kafka can carry,
error codes that are no error, bodies too big or too deep for the HTTP endpoint, rules without
end, and a broker that stops while a latency rule holds a request."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from kbroker.clock import ManualClock
from kbroker.codec import encode_request
from kbroker.server import faults as faults_module
from kbroker.server.faults import FaultInjector, FaultRuleError
from kbroker.server.intercept import Interceptors
from kbroker.testing import BrokerThread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from socket_helpers import read_frame  # noqa: E402


@pytest.mark.parametrize(("spec", "says"), [
    ({"api": "Produce", "error": 0}, "other than NONE"),
    ({"api": "Produce", "error": "NONE"}, "other than NONE"),
    ({"api": "Produce", "action": "throttle", "ms": 2**31}, "ms must be at most"),
    ({"api": "Produce", "action": "latency", "ms": 10**30}, "ms must be at most"),
    ({"api": "Produce", "error": 6, "ttl_ms": 10**400}, "ttl_ms must be"),
    ({"api": "Produce", "error": 6, "topic": "t", "partition": 2**40}, "partition must be"),
    ({"api": "1" * 5000, "error": 6}, "not a number"),
    ({"api": "Produce", "error": "9" * 5000}, "not a number"),
])
def test_values_no_kafka_field_can_carry_are_refused(spec: dict[str, Any], says: str) -> None:
    interceptors = Interceptors()
    faults = FaultInjector(interceptors, ManualClock())
    with pytest.raises(FaultRuleError, match=says):
        faults.add_json(spec)
    assert faults.rules() == [] and not interceptors


def test_rules_are_bounded_live_and_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults_module, "MAX_RULES", 5)
    monkeypatch.setattr(faults_module, "MAX_ENDED", 3)
    clock = ManualClock()
    faults = FaultInjector(Interceptors(), clock)
    ids = [faults.add("Metadata", error=6, ttl_ms=10) for _ in range(5)]
    with pytest.raises(FaultRuleError, match="too many rules"):
        faults.add("Metadata", error=6)
    clock.advance(20)  # all five expire: they no longer count against the live limit
    faults.add("Metadata", error=6)
    listed = faults.rules()
    assert len(listed) == 4  # the three newest expired ones, and the live one
    assert [r["id"] for r in listed[:3]] == ids[2:] and listed[3]["state"] == "active"


def test_the_http_endpoint_refuses_huge_and_deep_bodies() -> None:
    faults = FaultInjector(Interceptors(), ManualClock())
    transport = httpx.ASGITransport(app=Starlette(routes=faults.routes()))

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://faults") as client:
            deep = await client.post("/faults", content=b"[" * 30000 + b"]" * 30000)
            assert deep.status_code == 400 and "not JSON" in deep.json()["error"]
            huge = await client.post("/faults", content=b'{"api": "Produce", "error": 6, "topic": "'
                                     + b"x" * 10**6 + b'"}')
            assert huge.status_code == 413
            garbage = await client.post("/faults", content=b"\xff\xfe{")
            assert garbage.status_code == 400
            assert faults.rules() == []
            made = await client.post("/faults", json={"api": "Produce", "error": 6})
            assert made.status_code == 201

    anyio.run(main)


def test_stopping_the_broker_ends_a_latency_rule_at_once(tmp_path: Path) -> None:
    broker = BrokerThread(tmp_path / "d", {"num.partitions": "1"}).start()
    try:
        broker.faults.add("Metadata", "latency", ms=60000)
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=30)
        s.sendall(encode_request(3, 12, 1, {"topics": None, "allow_auto_topic_creation": False,
                                              "include_topic_authorized_operations": False}))
        deadline = time.monotonic() + 10
        while broker.faults.rules()[0]["fired"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert broker.faults.rules()[0]["fired"] == 1
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.append(_read_or_closed(s)))
        reader.start()
    finally:
        started = time.monotonic()
        broker.stop()
    took = time.monotonic() - started
    reader.join(10)
    s.close()
    assert took < 5, f"stopping took {took:.1f} s"
    assert got == ["closed"]


def _read_or_closed(s: socket.socket) -> str:
    try:
        read_frame(s)
    except (ConnectionError, EOFError, OSError, ValueError):
        return "closed"
    return "answered"


def test_rules_added_from_many_threads_install_the_injector_once() -> None:
    class SlowInterceptors(Interceptors):
        """Installing takes a while, so threads adding rules at once overlap in it."""

        def add(self, interceptor: Any, *, outermost: bool = False) -> None:
            time.sleep(0.02)
            super().add(interceptor, outermost=outermost)

    interceptors = SlowInterceptors()
    faults = FaultInjector(interceptors, ManualClock())
    threads = [threading.Thread(target=lambda: faults.add("Metadata", error=6, count=0)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [i for i in interceptors if i is faults] == [faults]
    faults.clear()
    assert not interceptors


def test_a_half_sent_rule_does_not_hold_the_broker_s_shutdown(tmp_path: Path) -> None:
    broker = BrokerThread(tmp_path / "d", {"faults.port": "0"}).start()
    try:
        s = socket.create_connection(("127.0.0.1", broker.faults.http_port), timeout=10)
        s.sendall(b"POST /faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"api\"")  # ... and the rest never comes
        garbage = socket.create_connection(("127.0.0.1", broker.faults.http_port), timeout=10)
        garbage.sendall(b"\x16\x03\x01 not HTTP\r\n\r\n")
        assert garbage.recv(100).startswith(b"HTTP/1.1 400")
        garbage.close()
        time.sleep(0.2)  # the endpoint waits in the rule's body
    finally:
        started = time.monotonic()
        broker.stop()
    took = time.monotonic() - started
    s.close()
    assert took < 3, f"stopping took {took:.1f} s"


def test_an_endpoint_that_fails_to_start_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from kbroker.server.http import HttpEndpoint

    def broken_load(self: Any) -> None:
        raise RuntimeError("no HTTP protocol implementation installed")

    monkeypatch.setattr(uvicorn.Config, "load", broken_load)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError, match="failed to start"):
                await HttpEndpoint("127.0.0.1", 0, []).start(tg)

    anyio.run(main)
