"""Dispatch decodes a large request frame (many thousands of array items) off the event loop."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from kbroker.codec import decode_request, encode_request
from kbroker.handlers.api import Session
from kbroker.server import dispatch as dispatch_module


def _describe_producers_frame(count: int) -> bytes:
    body = {"topics": [{"name": "t", "partition_indexes": list(range(count))}]}
    return encode_request(61, 0, 1, body)[4:]


def _broker() -> Any:
    return SimpleNamespace(authorizer=None, metadata=SimpleNamespace(partition=lambda t, i: None, topic=lambda t: None),
                           replica_manager=SimpleNamespace(), client_quotas=SimpleNamespace(enabled=False))


@pytest.mark.parametrize("count,off_loop", [(10, False), (100_000, True)])
def test_large_frames_are_decoded_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch, count: int,
                                                     off_loop: bool) -> None:
    decoded_in: list[threading.Thread] = []

    def recording_decode(frame: bytes) -> Any:
        decoded_in.append(threading.current_thread())
        return decode_request(frame)

    monkeypatch.setattr(dispatch_module, "decode_request", recording_decode)
    frame = _describe_producers_frame(count)
    assert (len(frame) >= dispatch_module.LARGE_FRAME) == off_loop
    parts = asyncio.run(dispatch_module.dispatch(_broker(), Session("PLAINTEXT", "127.0.0.1", 1), frame))
    assert parts is not None
    assert len(decoded_in) == 1
    assert (decoded_in[0] is not threading.main_thread()) == off_loop


def test_large_produce_frames_are_decoded_on_the_loop() -> None:
    # Produce's size is record data, one bytes field: quick to decode however large.
    assert dispatch_module._mostly_records(encode_request(0, 9, 1, {
        "transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": []})[4:])
    assert not dispatch_module._mostly_records(_describe_producers_frame(1))
