"""AlterClientQuotas and DescribeClientQuotas with many thousands of entities: the handlers
work through them letting other connections in, and their answers are encoded off the loop."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from test_quotas import MemoryStore

from kbroker.clock import ManualClock
from kbroker.codec import decode_request, encode_request
from kbroker.handlers import alter_client_quotas, describe_client_quotas
from kbroker.handlers.api import MANY, DetachedBody, RequestContext, Session
from kbroker.security.quotas import QuotaManager


def _ctx(api_key: int, version: int, body: dict[str, Any], broker: Any) -> RequestContext:
    request = decode_request(encode_request(api_key, version, 1, body)[4:])
    return RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1), request)


def _run_counting_yields(coro: Any) -> tuple[Any, int]:
    yields = 0

    async def main() -> Any:
        nonlocal yields
        task = asyncio.ensure_future(coro)
        while not task.done():
            yields += 1
            await asyncio.sleep(0)
        return task.result()

    return asyncio.run(main()), yields


def test_many_entities_are_altered_and_described_without_holding_the_loop() -> None:
    count = MANY * 5
    broker = SimpleNamespace(authorizer=None, client_quotas=QuotaManager(MemoryStore(), ManualClock()))
    entries = [{"entity": [{"entity_type": "user", "entity_name": f"u{i}"}],
                "ops": [{"key": "producer_byte_rate", "value": 1024.0, "remove": False}]} for i in range(count)]
    out, yields = _run_counting_yields(alter_client_quotas.handle(
        _ctx(49, 1, {"entries": entries, "validate_only": False}, broker)))
    assert isinstance(out, DetachedBody)
    assert [e["error_code"] for e in out["entries"]] == [0] * count
    assert yields >= 5
    out, yields = _run_counting_yields(describe_client_quotas.handle(
        _ctx(48, 1, {"components": [{"entity_type": "user", "match_type": 2, "match": None}], "strict": False},
             broker)))
    assert isinstance(out, DetachedBody)
    assert len(out["entries"]) == count
    assert {"entity": [{"entity_type": "user", "entity_name": "u7"}],
            "values": [{"key": "producer_byte_rate", "value": 1024.0}]} in out["entries"]
    assert yields >= 5


def test_many_active_client_ids_do_not_make_every_request_scan_all_measures(monkeypatch: Any) -> None:
    # With a default client-id quota, each new client id gets a measure. A client cycling
    # through client ids must not make every request scan all of them once many are active.
    from test_quotas import alter, manager

    m = manager()
    alter(m, [("client-id", None)], request_percentage=1000.0)
    scans = 0
    expire = QuotaManager._expire

    def counting(self: QuotaManager, rates: Any) -> None:
        nonlocal scans
        scans += 1
        expire(self, rates)

    monkeypatch.setattr(QuotaManager, "_expire", counting)
    ids = 10_200
    for i in range(ids):
        assert m.record("User:ANONYMOUS", f"client-{i}", "request_percentage", 1.0) == 0
    assert scans <= 2, scans
    # Measures idle for a whole quota window are still dropped.
    m._clock.advance(60_000)  # type: ignore[attr-defined]
    for i in range(ids, 2 * ids + 1):
        m.record("User:ANONYMOUS", f"client-{i}", "request_percentage", 1.0)
    assert len(m._rates) < 2 * ids
