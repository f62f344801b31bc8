"""``__transaction_state`` records, byte for byte as Kafka's TransactionLogKey/Value."""

from __future__ import annotations

import struct

import pytest

from kbroker.common import TopicPartition
from kbroker.txn.records import TransactionRecordError, decode_key, decode_value, encode_key, encode_value
from kbroker.txn.state import TransactionState, TxnTransitMetadata

S = TransactionState


def transit(state: TransactionState, parts: frozenset[TopicPartition] = frozenset(), last_pid: int = -1
            ) -> TxnTransitMetadata:
    return TxnTransitMetadata(1000, last_pid, 3, -1, 60_000, state, parts, 1_700_000_000_001, 1_700_000_000_002)


def test_key_layout() -> None:
    # type 0 (TransactionLogKey), then the id as an int16-length string.
    assert encode_key("tx-1") == b"\x00\x00\x00\x04tx-1"
    assert decode_key(encode_key("tx-é")) == "tx-é"


@pytest.mark.parametrize("key", [b"\x00\x01\x00\x01a", b"\x00", b"\x00\x00\x00\x09abc"])
def test_bad_keys(key: bytes) -> None:
    with pytest.raises(TransactionRecordError):
        decode_key(key)


def test_value_v0_layout_of_an_ongoing_transaction() -> None:
    t = transit(S.ONGOING, frozenset({TopicPartition("b", 1), TopicPartition("a", 0), TopicPartition("a", 2)}))
    expected = (struct.pack(">hqhib", 0, 1000, 3, 60_000, 1)
                + struct.pack(">i", 2)
                + struct.pack(">h", 1) + b"a" + struct.pack(">iii", 2, 0, 2)
                + struct.pack(">h", 1) + b"b" + struct.pack(">ii", 1, 1)
                + struct.pack(">qq", 1_700_000_000_002, 1_700_000_000_001))
    assert encode_value(t) == expected
    assert decode_value(expected) == t


def test_empty_has_a_null_partition_list() -> None:
    raw = encode_value(transit(S.EMPTY))
    assert raw[17:21] == b"\xff\xff\xff\xff" and len(raw) == 17 + 4 + 16
    assert decode_value(raw) == transit(S.EMPTY)
    with pytest.raises(ValueError):
        encode_value(transit(S.EMPTY, frozenset({TopicPartition("a", 0)})))


def test_value_v1_round_trip_with_the_previous_producer_id() -> None:
    t = transit(S.PREPARE_COMMIT, frozenset({TopicPartition("a", 0)}), last_pid=77)
    raw = encode_value(t, version=1)
    assert raw[:2] == b"\x00\x01"
    # compact array of 1 entry: topic "a" (compact string), [0], no tags; then the timestamps.
    assert raw[17:26] == b"\x02\x02a\x02\x00\x00\x00\x00\x00"
    assert decode_value(raw) == t


@pytest.mark.parametrize("raw", [b"\x00\x02" + b"\x00" * 40, b"\x00\x00" + b"\x00" * 5,
                                 struct.pack(">hqhib", 0, 1, 0, 1, 9) + b"\xff\xff\xff\xff" + b"\x00" * 16])
def test_bad_values(raw: bytes) -> None:
    with pytest.raises(TransactionRecordError):
        decode_value(raw)
