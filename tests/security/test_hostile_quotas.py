"""AlterClientQuotas and DescribeClientQuotas with many thousands of entities: the handlers
work through them letting other connections in, and their answers are encoded off the loop."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from handler_calls import handler_context, run_counting_yields
from test_quotas import MemoryStore

from kbroker.clock import ManualClock
from kbroker.handlers import alter_client_quotas, describe_client_quotas
from kbroker.handlers.api import MANY, DetachedBody
from kbroker.security.quotas import QuotaManager


def test_many_entities_are_altered_and_described_without_holding_the_loop() -> None:
    count = MANY * 5
    broker = SimpleNamespace(authorizer=None, client_quotas=QuotaManager(MemoryStore(), ManualClock()))
    entries = [{"entity": [{"entity_type": "user", "entity_name": f"u{i}"}],
                "ops": [{"key": "producer_byte_rate", "value": 1024.0, "remove": False}]} for i in range(count)]
    out, yields = run_counting_yields(alter_client_quotas.handle(
        handler_context(49, 1, {"entries": entries, "validate_only": False}, broker)))
    assert isinstance(out, DetachedBody)
    assert [e["error_code"] for e in out["entries"]] == [0] * count
    assert yields >= 5
    out, yields = run_counting_yields(describe_client_quotas.handle(
        handler_context(48, 1, {"components": [{"entity_type": "user", "match_type": 2, "match": None}], "strict": False},
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
