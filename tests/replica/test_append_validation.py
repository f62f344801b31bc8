"""The replica manager's produce append validates a client batch once: what each malformed
batch is answered must not depend on which step (its own validation or the log's) finds it."""

from __future__ import annotations

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.log import LogConfig
from kbroker.records.batch import COMPRESSION_GZIP
from kbroker.records.builder import NewRecord, build_batch

NOW = 1_700_000_000_000  # ManualClock's start
TP = TopicPartition("t", 0)

pytestmark = pytest.mark.anyio


def _corrupt(batch: bytes) -> bytes:
    out = bytearray(batch)
    out[-1] ^= 0xFF  # the last record byte: covered by the CRC, the framing stays whole
    return bytes(out)


async def _append(cluster, records: bytes):  # type: ignore[no-untyped-def]
    return (await cluster.rm.append_records({TP: records}, acks=-1))[TP]


async def test_uncompressed_crc_mismatch_is_corrupt_message_and_writes_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    plog = cluster.add("t")
    r = await _append(cluster, _corrupt(build_batch([NewRecord(None, b"value", (), NOW)])))
    assert r.error_code == ErrorCode.CORRUPT_MESSAGE
    assert r.log_start_offset == -1
    assert plog.log_end_offset == 0
    ok = await _append(cluster, build_batch([NewRecord(None, b"value", (), NOW)]))
    assert (ok.error_code, ok.base_offset) == (ErrorCode.NONE, 0)


async def test_compressed_crc_mismatch_is_corrupt_message(cluster) -> None:  # type: ignore[no-untyped-def]
    plog = cluster.add("t")
    batch = build_batch([NewRecord(None, b"v" * 200, (), NOW)], compression=COMPRESSION_GZIP)
    r = await _append(cluster, _corrupt(batch))
    assert r.error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 0


async def test_crc_check_of_an_uncompressed_batch_comes_before_its_timestamps(cluster) -> None:  # type: ignore[no-untyped-def]
    # As Kafka: UnifiedLog.analyzeAndValidateRecords checks each batch's CRC before LogValidator
    # looks at timestamps, so a corrupt batch is CORRUPT_MESSAGE even when its timestamps are refused too.
    plog = cluster.add("t")
    late = NOW + 10 * 24 * 3_600_000  # past message.timestamp.after.max.ms (one hour)
    r = await _append(cluster, _corrupt(build_batch([NewRecord(None, b"value", (), late)])))
    assert r.error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 0
    # An intact batch with that timestamp is refused for it.
    r = await _append(cluster, build_batch([NewRecord(None, b"value", (), late)]))
    assert r.error_code == ErrorCode.INVALID_TIMESTAMP


async def test_topic_that_recompresses_still_validates_its_rewritten_batches(cluster) -> None:  # type: ignore[no-untyped-def]
    # compression.type names a codec: the log validates the rewritten bytes itself (no headers handed over).
    plog = cluster.add("t", config=LogConfig(compression_type="gzip"))
    ok = await _append(cluster, build_batch([NewRecord(None, b"value", (), NOW)]))
    assert ok.error_code == ErrorCode.NONE and plog.log_end_offset == 1
    compressed = build_batch([NewRecord(None, b"v" * 200, (), NOW)], compression=COMPRESSION_GZIP)
    assert (await _append(cluster, _corrupt(compressed))).error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 1


async def test_many_batches_rule_and_oversized_batch(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.add("t", config=LogConfig(max_message_bytes=200))
    two = build_batch([NewRecord(None, b"a", (), NOW)]) + build_batch([NewRecord(None, b"b", (), NOW)])
    assert (await _append(cluster, two)).error_code == ErrorCode.INVALID_RECORD
    big = build_batch([NewRecord(None, b"x" * 500, (), NOW)])
    assert (await _append(cluster, big)).error_code == ErrorCode.MESSAGE_TOO_LARGE


async def test_corrupt_uncompressed_batch_is_refused_by_a_topic_that_recompresses(cluster) -> None:  # type: ignore[no-untyped-def]
    # Recompressing would write a fresh CRC over the corrupt records; Kafka answers CORRUPT_MESSAGE.
    plog = cluster.add("t", config=LogConfig(compression_type="gzip"))
    r = await _append(cluster, _corrupt(build_batch([NewRecord(None, b"value", (), NOW)])))
    assert r.error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 0


def _large(compression: int = 0, *, keyed: bool = True, corrupt_at: int | None = None) -> bytes:
    """A batch of more records than OFFLOAD_CHECK_RECORDS: 3,000 of 100 bytes."""
    from kbroker.replica.manager import OFFLOAD_CHECK_RECORDS

    records = [NewRecord(str(i).encode() if keyed or i != corrupt_at else None, bytes(100), (), NOW)
               for i in range(3000)]
    assert len(records) > OFFLOAD_CHECK_RECORDS
    return build_batch(records, compression=compression)


@pytest.fixture
def checks_in(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads client payloads are validated in."""
    import threading

    from kbroker.replica import manager

    seen: list[str] = []
    inner = manager.validate_client_batches

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return inner(*args, **kwargs)

    monkeypatch.setattr(manager, "validate_client_batches", recording)
    return seen


@pytest.mark.parametrize("config, compression", [
    (LogConfig(), COMPRESSION_GZIP), (LogConfig(cleanup_policy="compact"), 0), (LogConfig(compression_type="gzip"), 0),
])
async def test_a_large_batch_whose_records_are_walked_is_checked_off_the_event_loop(
        cluster, checks_in: list[str], config: LogConfig, compression: int) -> None:  # type: ignore[no-untyped-def]
    import threading

    plog = cluster.add("t", config=config)
    r = await _append(cluster, _large(compression))
    assert (r.error_code, r.base_offset) == (ErrorCode.NONE, 0)
    assert plog.log_end_offset == 3000
    assert checks_in and checks_in[0] != threading.current_thread().name
    # A batch of few records is checked on the loop: a thread would cost more than the walk.
    checks_in.clear()
    small = build_batch([NewRecord(b"k", b"v", (), NOW)], compression=compression)
    assert (await _append(cluster, small)).error_code == ErrorCode.NONE
    assert checks_in == [threading.current_thread().name]


async def test_a_large_plain_batch_is_checked_on_the_loop(cluster, checks_in: list[str]) -> None:  # type: ignore[no-untyped-def]
    # Its records are not walked: the headers are all there is to check, a thread would only cost.
    import threading

    cluster.add("t")
    r = await _append(cluster, _large())
    assert r.error_code == ErrorCode.NONE
    assert checks_in == [threading.current_thread().name]


async def test_a_large_batch_checked_off_the_loop_is_refused_as_inline(cluster, checks_in: list[str]) -> None:  # type: ignore[no-untyped-def]
    # A keyless record on a compacted topic: INVALID_RECORD naming it, nothing written.
    plog = cluster.add("t", config=LogConfig(cleanup_policy="compact"))
    r = await _append(cluster, _large(keyed=False, corrupt_at=1234))
    assert r.error_code == ErrorCode.INVALID_RECORD
    assert [e[0] for e in r.record_errors] == [1234]
    assert plog.log_end_offset == 0
    # and a corrupt one: CORRUPT_MESSAGE
    r = await _append(cluster, _corrupt(_large()))
    assert r.error_code == ErrorCode.CORRUPT_MESSAGE
    assert plog.log_end_offset == 0


async def test_a_large_batch_to_an_internal_topic_is_refused_as_internal_before_its_records_are_checked(
        cluster, checks_in: list[str]) -> None:  # type: ignore[no-untyped-def]
    # As Kafka (ReplicaManager.appendToLocalLog): a client's write to an internal topic is refused
    # before the log validates anything, whatever its records (here keyless, to a compacted topic).
    tp = TopicPartition("__consumer_offsets", 0)
    plog = cluster.add(tp.topic, config=LogConfig(cleanup_policy="compact"))
    for records in (_large(COMPRESSION_GZIP, keyed=False, corrupt_at=7), _corrupt(_large(COMPRESSION_GZIP))):
        r = (await cluster.rm.append_records({tp: records}, acks=-1))[tp]
        assert (r.error_code, r.log_start_offset) == (ErrorCode.INVALID_TOPIC_EXCEPTION, -1)
        assert r.record_errors == ()
    assert checks_in == [] and plog.log_end_offset == 0


async def test_a_large_batch_without_enough_in_sync_replicas_is_refused_before_its_records_are_checked(
        cluster, checks_in: list[str]) -> None:  # type: ignore[no-untyped-def]
    # acks=-1 with an ISR smaller than min.insync.replicas: NOT_ENOUGH_REPLICAS (with the log's start
    # offset) before validation, so a corrupt batch does not turn it into CORRUPT_MESSAGE.
    plog = cluster.add("t", config=LogConfig(min_insync_replicas=2), replicas=[1, 2])
    r = await _append(cluster, _corrupt(_large(COMPRESSION_GZIP)))
    assert (r.error_code, r.log_start_offset) == (ErrorCode.NOT_ENOUGH_REPLICAS, 0)
    assert checks_in == [] and plog.log_end_offset == 0


async def test_a_large_transactional_batch_is_appended_without_yielding_to_the_loop(cluster) -> None:  # type: ignore[no-untyped-def]
    # Produce verifies a transactional partition (KIP-890) and appends with no await in between,
    # so no transaction marker can land between the two: a batch appended after the marker that
    # ended its transaction would open a transaction nothing ends (a hanging transaction).
    import anyio

    from kbroker.replica.manager import OFFLOAD_CHECK_RECORDS
    from kbroker.txn.markers import TxnMarker

    plog = cluster.add("t")
    batch = build_batch([NewRecord(b"k", bytes(100), (), NOW) for _ in range(OFFLOAD_CHECK_RECORDS + 1)],
                        compression=COMPRESSION_GZIP, producer_id=7, producer_epoch=0, base_sequence=0,
                        transactional=True)
    order: list[str] = []

    async def produce() -> None:
        assert (await _append(cluster, batch)).error_code == ErrorCode.NONE
        order.append("batch")

    async def abort() -> None:
        assert await cluster.rm.write_txn_markers([TxnMarker(7, 0, 0, False, (TP,))]) == [{TP: ErrorCode.NONE}]
        order.append("marker")

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        tg.start_soon(abort)
    assert order == ["batch", "marker"]
    assert not plog.has_ongoing_transaction(7)


async def test_a_large_batch_is_checked_again_if_its_topic_changed_while_it_was_checked_off_the_loop(
        cluster, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # The topic is deleted and created again, compacted, while the worker thread validates the batch
    # under the old topic's config: the append must answer as if it had run at once (keyless records
    # refused), never write records the new topic's config refuses.
    import threading

    import anyio

    from kbroker.replica import manager

    entered, go = threading.Event(), threading.Event()
    inner = manager.validate_client_batches

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            assert go.wait(20)
        return inner(*args, **kwargs)

    monkeypatch.setattr(manager, "validate_client_batches", held)
    old = cluster.add("t")
    result = []

    async def produce() -> None:
        result.append(await _append(cluster, _large(COMPRESSION_GZIP, keyed=False, corrupt_at=42)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        assert await anyio.to_thread.run_sync(entered.wait, 20)
        old.close()
        new = cluster.add("t", config=LogConfig(cleanup_policy="compact"))
        go.set()
    assert result[0].error_code == ErrorCode.INVALID_RECORD
    assert [e[0] for e in result[0].record_errors] == [42]
    assert new.log_end_offset == 0
