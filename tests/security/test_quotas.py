"""Client quotas without a broker: Kafka's precedence, sampled rates and token buckets on a
manual clock, the throttle formula, validation and durability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.clock import ManualClock
from kbroker.security.quotas import (
    CONTROLLER_MUTATION_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    FilterComponent,
    MutationQuota,
    QuotaError,
    QuotaManager,
    SampledRate,
    TokenBucket,
    entity,
    validate_entity,
    validate_value,
)
from kbroker.security.store import FileStateStore


class MemoryStore:
    """A StateStore in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.saves = 0

    def load(self, kind: str) -> Any:
        return self.docs.get(kind)

    def save(self, kind: str, document: Any) -> None:
        self.saves += 1
        self.docs[kind] = document


def manager(clock: ManualClock | None = None, **kw: Any) -> QuotaManager:
    return QuotaManager(MemoryStore(), clock or ManualClock(), **kw)


def alter(m: QuotaManager, parts: list[tuple[str, str | None]], **values: float | None) -> None:
    anyio.run(m.alter, [(entity(parts), values)])


# -- rates -----------------------------------------------------------------------------


def test_sampled_rate_spreads_a_first_burst_over_the_whole_window() -> None:
    r = SampledRate(11, 1000)
    r.record(1000, 0)
    # Fewer than samples-1 full windows: the span counts as 10 windows (Kafka's Rate.windowSize).
    assert r.window_size_ms(0) == 10_000
    assert r.measure(0) == pytest.approx(100.0)
    r.record(1000, 500)
    assert r.measure(500) == pytest.approx(2000 / 10.5)


def test_sampled_rate_forgets_samples_older_than_the_window() -> None:
    r = SampledRate(3, 1000)
    r.record(600, 0)
    r.record(300, 1000)
    r.record(300, 2000)
    assert r.measure(2000) == pytest.approx(1200 / 2.0)
    # At 3 s the first sample (600) is obsolete: only the later ones count.
    assert r.measure(3000) == pytest.approx(600 / 2.0)
    assert r.measure(10_000) == 0


def test_throttle_formula_is_kafkas() -> None:
    r = SampledRate(11, 1000)
    r.record(2000, 0)  # 200/s over a 10 s window
    assert r.throttle_ms(200, 0) == 0  # at the quota: no throttle
    # (observed - quota) / quota * window = (200 - 100) / 100 * 10000
    assert r.throttle_ms(100, 0) == 10_000
    assert r.throttle_ms(150, 0) == round(50 / 150 * 10_000)


def test_token_bucket_starts_full_and_refills_at_the_quota() -> None:
    b = TokenBucket(10, 1000)
    assert b.measure(10, 0) == 100  # burst = samples x window x quota
    b.record(10, 90, 0)
    b.record(10, 90, 0)
    assert b.measure(10, 0) == -80
    assert b.throttle_ms(10, 0) == 8000  # -tokens / quota seconds
    assert b.measure(10, 3000) == -50
    assert b.measure(10, 60_000) == 100  # never above the burst


def test_strict_mutation_quota_accepts_while_tokens_are_left_then_refuses() -> None:
    clock = ManualClock()
    q = MutationQuota(TokenBucket(10, 1000), 10, clock, strict=True)
    assert q.accept(90) and q.accept(90)  # the second one overdraws: still accepted
    assert q.throttle_time_ms == 0
    assert not q.accept(1)
    assert q.throttle_time_ms == 8000
    clock.advance(3000)
    assert q.throttle_time_ms == 5000  # less the time since it was recorded


def test_permissive_mutation_quota_accepts_everything_and_throttles() -> None:
    q = MutationQuota(TokenBucket(10, 1000), 10, ManualClock(), strict=False)
    assert q.accept(90)
    assert q.throttle_time_ms == 0
    assert q.accept(90)
    assert q.throttle_time_ms == 8000
    assert q.accept(100)
    assert q.throttle_time_ms == 18000


# -- precedence ------------------------------------------------------------------------

PRECEDENCE = [
    ([("user", "alice"), ("client-id", "app")], 1),
    ([("user", "alice"), ("client-id", None)], 2),
    ([("user", "alice")], 3),
    ([("user", None), ("client-id", "app")], 4),
    ([("user", None), ("client-id", None)], 5),
    ([("user", None)], 6),
    ([("client-id", "app")], 7),
    ([("client-id", None)], 8),
]


def test_precedence_follows_kafka() -> None:
    m = manager()
    for parts, value in PRECEDENCE:
        alter(m, parts, producer_byte_rate=value)
    for parts, value in PRECEDENCE:
        assert m.limit("User:alice", "app", PRODUCER_BYTE_RATE) == value
        alter(m, parts, producer_byte_rate=None)
    assert m.limit("User:alice", "app", PRODUCER_BYTE_RATE) is None
    assert not m.enabled


def test_precedence_is_per_quota_key() -> None:
    m = manager()
    alter(m, [("user", "alice")], producer_byte_rate=100)
    alter(m, [("client-id", "app")], request_percentage=50)
    assert m.limit("User:alice", "app", PRODUCER_BYTE_RATE) == 100
    assert m.limit("User:alice", "app", REQUEST_PERCENTAGE) == 50
    assert m.limit("User:bob", "app", PRODUCER_BYTE_RATE) is None
    assert m.limit("User:alice", "other", REQUEST_PERCENTAGE) is None


def test_a_user_quota_is_shared_by_its_clients_a_default_one_is_not() -> None:
    clock = ManualClock()
    m = manager(clock)
    alter(m, [("user", "alice")], producer_byte_rate=100)  # 1000 bytes fill the 10 s window
    assert m.record("User:alice", "a", PRODUCER_BYTE_RATE, 1000) == 0
    assert m.record("User:alice", "b", PRODUCER_BYTE_RATE, 1000) == 10_000  # one measure for alice
    alter(m, [("user", None)], producer_byte_rate=100)
    assert m.record("User:bob", "a", PRODUCER_BYTE_RATE, 1000) == 0
    assert m.record("User:carol", "a", PRODUCER_BYTE_RATE, 1000) == 0  # each user its own measure
    alter(m, [("client-id", None)], request_percentage=10)
    m.record("User:x", "c1", REQUEST_PERCENTAGE, 100)
    assert m.record("User:x", "c2", REQUEST_PERCENTAGE, 100) == 0  # default client-id: one per client


def test_request_quota_throttle_is_bounded_by_one_window() -> None:
    m = manager()
    alter(m, [("client-id", "app")], request_percentage=1)
    assert m.record("User:ANONYMOUS", "app", REQUEST_PERCENTAGE, 10_000) == 1000


def test_unrecord_takes_a_value_back() -> None:
    m = manager()
    alter(m, [("client-id", "c")], consumer_byte_rate=100)
    assert m.record("User:ANONYMOUS", "c", "consumer_byte_rate", 5000) > 0
    m.unrecord("User:ANONYMOUS", "c", "consumer_byte_rate", 5000)
    assert m.record("User:ANONYMOUS", "c", "consumer_byte_rate", 500) == 0
    assert m.max_value_in_window("User:ANONYMOUS", "c", "consumer_byte_rate") == 100 * 10


def test_enabled_only_with_client_quotas_and_ip_quotas_are_looked_up() -> None:
    m = manager()
    alter(m, [("ip", "127.0.0.1")], connection_creation_rate=5)
    assert not m.enabled
    assert m.ip_connection_rate("127.0.0.1") == 5
    assert m.ip_connection_rate("10.0.0.1") is None
    alter(m, [("ip", None)], connection_creation_rate=7)
    assert m.ip_connection_rate("10.0.0.1") == 7
    assert m.mutation_quota("User:ANONYMOUS", "c", strict=True) is None
    alter(m, [("client-id", "c")], controller_mutation_rate=1.5)
    assert m.enabled
    quota = m.mutation_quota("User:ANONYMOUS", "c", strict=True)
    assert quota is not None and quota.strict


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("parts", "message"), [
    ([], "Invalid empty client quota entity"),
    ([("group", "g")], "Unhandled client quota entity type: group"),
    ([("user", "a"), ("user", "b")], "duplicate"),
    ([("ip", "not-an-ip")], "is not a valid IP"),
    ([("ip", "127.0.0.1"), ("user", "a")], "IP entity should not be combined"),
])
def test_entity_validation(parts: list[tuple[str, str | None]], message: str) -> None:
    with pytest.raises(QuotaError, match=message):
        validate_entity(parts)


def test_ip_entities_are_canonical() -> None:
    assert validate_entity([("ip", "::0001")]) == (("ip", "::1"),)


@pytest.mark.parametrize(("parts", "key", "value", "message"), [
    ([("user", "a")], "foo", 1.0, "Invalid configuration key foo"),
    ([("user", "a")], "connection_creation_rate", 1.0, "Invalid configuration key"),
    ([("ip", "1.2.3.4")], "producer_byte_rate", 1.0, "Invalid configuration key"),
    ([("user", "a")], "producer_byte_rate", 1.5, "must be a Long value"),
    ([("ip", "1.2.3.4")], "connection_creation_rate", 2.5, "must be an Integer value"),
    ([("user", "a")], "producer_byte_rate", 1e30, "too large"),
    ([("user", "a")], "request_percentage", float("nan"), "Invalid value"),
    ([("user", "a")], "request_percentage", -1.0, "cannot be negative"),
])
def test_value_validation(parts: list[tuple[str, str | None]], key: str, value: float, message: str) -> None:
    with pytest.raises(QuotaError, match=message):
        validate_value(entity(parts), key, value)


def test_valid_values() -> None:
    validate_value(entity([("user", "a")]), "request_percentage", 12.5)
    validate_value(entity([("user", "a")]), CONTROLLER_MUTATION_RATE, 0.5)
    validate_value(entity([("user", "a"), ("client-id", None)]), PRODUCER_BYTE_RATE, 1024.0)


def test_describe_matching() -> None:
    m = manager()
    alter(m, [("user", "alice")], producer_byte_rate=1)
    alter(m, [("user", "alice"), ("client-id", "app")], producer_byte_rate=2)
    alter(m, [("user", None)], producer_byte_rate=3)
    alter(m, [("client-id", None)], producer_byte_rate=4)

    def names(components: list[FilterComponent], strict: bool = False) -> set[int]:
        return {int(v[PRODUCER_BYTE_RATE]) for _, v in m.describe(components, strict)}

    assert names([]) == {1, 2, 3, 4}
    assert names([], strict=True) == set()
    assert names([FilterComponent("user", 0, "alice")]) == {1, 2}
    assert names([FilterComponent("user", 0, "alice")], strict=True) == {1}
    assert names([FilterComponent("user", 1, None)]) == {3}
    assert names([FilterComponent("user", 2, None)]) == {1, 2}
    assert names([FilterComponent("client-id", 2, None)]) == {2}
    assert names([FilterComponent("client-id", 1, None)], strict=True) == {4}


@pytest.mark.parametrize(("components", "message"), [
    ([FilterComponent("foo", 0, "x")], "Unknown entity type: foo"),
    ([FilterComponent("user", 0, "a"), FilterComponent("user", 0, "b")], "cannot appear more than once"),
    ([FilterComponent("user", 0, None)], "MATCH_TYPE_EXACT"),
    ([FilterComponent("user", 1, "a")], "also specified"),
    ([FilterComponent("user", 7, None)], "Unknown match type: 7"),
    ([FilterComponent("ip", 2, None), FilterComponent("user", 2, None)], "IP filter component"),
])
def test_describe_filter_validation(components: list[FilterComponent], message: str) -> None:
    with pytest.raises(QuotaError, match=message):
        manager().describe(components, False)


# -- durability ------------------------------------------------------------------------


def test_quotas_are_durable_and_validate_only_changes_nothing(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    m = QuotaManager(store, ManualClock())
    anyio.run(m.alter, [(entity([("user", None), ("client-id", "app")]), {"producer_byte_rate": 10.0})])
    anyio.run(m.alter, [(entity([("ip", "10.1.2.3")]), {"connection_creation_rate": 3.0})])
    anyio.run(lambda: m.alter([(entity([("user", "x")]), {"request_percentage": 5.0})], validate_only=True))
    again = QuotaManager(FileStateStore(tmp_path), ManualClock())
    assert again.configs() == {
        (("client-id", "app"), ("user", None)): {"producer_byte_rate": 10.0},
        (("ip", "10.1.2.3"),): {"connection_creation_rate": 3.0},
    }
    assert again.enabled
    assert (store.path("quotas").stat().st_mode & 0o777) == 0o600
    # Removing the last key removes the entity.
    anyio.run(m.alter, [(entity([("ip", "10.1.2.3")]), {"connection_creation_rate": None})])
    assert (("ip", "10.1.2.3"),) not in QuotaManager(FileStateStore(tmp_path), ManualClock()).configs()


def test_a_failed_save_changes_nothing() -> None:
    class Failing(MemoryStore):
        def save(self, kind: str, document: Any) -> None:
            raise OSError("disk full")

    m = QuotaManager(Failing(), ManualClock())
    with pytest.raises(OSError):
        anyio.run(m.alter, [(entity([("user", "a")]), {"producer_byte_rate": 1.0})])
    assert m.configs() == {} and not m.enabled


# -- the request path ------------------------------------------------------------------


def _meter() -> Any:
    from kbroker.handlers.api import Session
    from kbroker.server.throttling import Meter

    return Meter(manager(), Session("PLAINTEXT", "127.0.0.1", 1), "c", 3, {}, 100)


def test_request_time_counts_the_handler_running_not_its_waits() -> None:
    import time

    meter = _meter()

    async def handler() -> str:
        await anyio.sleep(0.3)  # parked, as a long-polling fetch: not counted
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:  # running on the loop: counted
            pass
        await anyio.sleep(0)
        return "done"

    assert anyio.run(meter.timed, handler()) == "done"
    assert 0.04 <= meter._busy < 0.2


def test_timed_handler_errors_and_cancellation_pass_through() -> None:
    meter = _meter()

    async def failing() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        anyio.run(meter.timed, failing())

    cleaned: list[bool] = []

    async def parked() -> None:
        try:
            await anyio.sleep(10)
        finally:
            cleaned.append(True)

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await meter.timed(parked())

    anyio.run(main)
    assert cleaned == [True]


def test_throttle_goes_into_the_response_and_the_session() -> None:
    from kbroker.handlers.api import Session
    from kbroker.server.throttling import Meter

    m = manager()
    alter(m, [("client-id", "c")], producer_byte_rate=10)
    session = Session("PLAINTEXT", "127.0.0.1", 1)
    meter = Meter(m, session, "c", 0, {}, 1000)  # a Produce of 1000 bytes: 100/s over 10 s
    body = meter.after_handle({"responses": [], "throttle_time_ms": 0})
    assert body is not None and body["throttle_time_ms"] == 90_000 == session.throttle_ms
    # acks=0: no response, the connection is muted all the same.
    session.throttle_ms = 0
    assert Meter(m, session, "c", 0, {}, 1000).after_handle(None) is None
    assert session.throttle_ms > 90_000


def test_idle_measures_are_dropped_when_many_clients_came_and_went(monkeypatch: pytest.MonkeyPatch) -> None:
    import kbroker.security.quotas as quotas

    monkeypatch.setattr(quotas, "_MAX_SENSORS", 3)
    clock = ManualClock()
    m = manager(clock)
    alter(m, [("client-id", None)], producer_byte_rate=100)
    for c in ("a", "b", "c"):
        m.record("User:u", c, PRODUCER_BYTE_RATE, 10)
    clock.advance(20_000)  # their samples are obsolete now
    m.record("User:u", "d", PRODUCER_BYTE_RATE, 10)
    assert set(m._rates) == {(PRODUCER_BYTE_RATE, "", "d")}  # a client-id quota: no user in its name


def test_a_detached_body_stays_detached_when_throttled() -> None:
    from kbroker.handlers.api import DetachedBody, Session
    from kbroker.server.throttling import Meter

    m = manager()
    alter(m, [("client-id", "c")], request_percentage=0.0001)
    meter = Meter(m, Session("PLAINTEXT", "127.0.0.1", 1), "c", 21, {}, 100)
    meter._busy = 0.01
    body = meter.after_handle(DetachedBody(topics=[], throttle_time_ms=0))
    assert isinstance(body, DetachedBody) and body["throttle_time_ms"] == 1000
