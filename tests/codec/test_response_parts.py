"""Responses as buffers for a vectored write: record data uncopied, the rest joined."""

from __future__ import annotations

import os
from typing import Any

import pytest

from kbroker.codec import decode_response, encode_response, encode_response_parts
from kbroker.codec.frames import LARGE_PART

FETCH = 1


def _fetch_body(records: list[bytes | None]) -> dict[str, Any]:
    return {
        "throttle_time_ms": 0, "error_code": 0, "session_id": 7,
        "responses": [{"topic": "t", "partitions": [
            {"partition_index": i, "error_code": 0, "high_watermark": 10, "last_stable_offset": 10,
             "log_start_offset": 0, "aborted_transactions": [], "preferred_read_replica": -1, "records": r}
            for i, r in enumerate(records)
        ]}],
    }


@pytest.mark.parametrize("version", [4, 11, 12, 16])
def test_parts_are_the_frame_with_large_records_uncopied(version: int) -> None:
    big1, big2 = os.urandom(LARGE_PART * 4), os.urandom(LARGE_PART)
    small = os.urandom(LARGE_PART - 1)
    body = _fetch_body([big1, small, None, big2, b""])
    parts = encode_response_parts(FETCH, version, 42, body)
    assert b"".join(parts) == encode_response(FETCH, version, 42, body)
    # The large record sets are the very objects handed in; the small one was joined.
    assert any(p is big1 for p in parts) and any(p is big2 for p in parts)
    assert not any(p is small for p in parts)
    # Runs of small pieces become one buffer each: prefix+header+..., between, and after.
    assert len(parts) == 5
    cid, decoded = decode_response(FETCH, version, b"".join(parts)[4:])
    assert cid == 42
    assert [bytes(p.records or b"") for p in decoded.responses[0].partitions] == [big1, small, b"", big2, b""]


def test_a_small_response_is_one_buffer() -> None:
    parts = encode_response_parts(FETCH, 12, 1, _fetch_body([os.urandom(100)]))
    assert len(parts) == 1
    assert int.from_bytes(parts[0][:4], "big") == len(parts[0]) - 4
