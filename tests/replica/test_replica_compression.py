"""ReplicaManager appends to topics whose compression.type names a codec: client and coordinator
appends, transaction markers, and the duplicate of a rewritten idempotent batch."""

from __future__ import annotations

import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.log import LogConfig
from kbroker.records.batch import COMPRESSION_GZIP, COMPRESSION_NONE, COMPRESSION_ZSTD, iter_headers
from kbroker.records.builder import NewRecord, build_batch
from kbroker.records.record import iter_records
from kbroker.txn.markers import TxnMarker

from .conftest import Cluster

pytestmark = pytest.mark.anyio

TP = TopicPartition("t", 0)


def _stored(cluster: Cluster) -> list[tuple[int, int, bool]]:
    plog = cluster.logs[("t", 0)]
    data = plog.read(0, 1 << 20, upper_bound=plog.log_end_offset)
    return [(h.base_offset, h.compression, h.is_control) for _, h in iter_headers(data)]


async def test_coordinator_appends_follow_the_topic_codec_and_markers_stay_uncompressed(cluster: Cluster) -> None:
    # As Kafka: the broker's own appends go through the same validator, so they take the topic's codec;
    # uncompressed control batches (transaction markers) are never compressed.
    cluster.add("t", config=LogConfig(compression_type="zstd"))
    now = cluster.clock.time_ms()
    txn = build_batch([NewRecord(b"k", b"v", (), now)] * 3, producer_id=5, producer_epoch=0, base_sequence=0,
                      transactional=True)
    [client] = (await cluster.rm.append_records({TP: txn}, acks=1)).values()
    assert client.error_code == ErrorCode.NONE
    [own] = (await cluster.rm.append_records({TP: build_batch([(b"g", b"state", (), now)])}, acks=1,
                                             internal=True)).values()
    assert own.error_code == ErrorCode.NONE
    await cluster.rm.write_txn_markers([TxnMarker(5, 0, 0, True, [TP])])
    assert _stored(cluster) == [(0, COMPRESSION_ZSTD, False), (3, COMPRESSION_ZSTD, False),
                                (4, COMPRESSION_NONE, True)]
    plog = cluster.logs[("t", 0)]
    assert plog.last_stable_offset == 5  # the rewritten batch kept its transactional flag and producer


async def test_a_retried_rewritten_batch_is_a_duplicate(cluster: Cluster) -> None:
    cluster.add("t", config=LogConfig(compression_type="gzip"))
    now = cluster.clock.time_ms()
    idem = build_batch([NewRecord(None, b"v", (), now)] * 2, producer_id=8, producer_epoch=0, base_sequence=0)
    first = (await cluster.rm.append_records({TP: idem}, acks=1))[TP]
    again = (await cluster.rm.append_records({TP: idem}, acks=1))[TP]
    assert (first.error_code, again.error_code, again.base_offset) == (0, 0, first.base_offset)
    assert _stored(cluster) == [(0, COMPRESSION_GZIP, False)]
    plog = cluster.logs[("t", 0)]
    assert [r.offset for r in iter_records(plog.read(0, 1 << 20, upper_bound=plog.log_end_offset))] == [0, 1]
