"""Creating a 10,000-partition topic is fast and does not block other connections."""

from __future__ import annotations

import gc
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from test_metadata_wire import WireClient

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread

N = 10_000


def _metadata(wire: WireClient, name: str, auto_create: bool = True) -> Any:
    return wire.call(3, 12, {"topics": [{"name": name, "topic_id": None}],
                             "allow_auto_topic_creation": auto_create,
                             "include_topic_authorized_operations": False})


def test_big_create_keeps_serving_other_connections(kafka_broker: BrokerThread) -> None:
    creator, other = WireClient(kafka_broker.bootstrap), WireClient(kafka_broker.bootstrap)
    try:
        body = {"topics": [{"name": "bulk", "num_partitions": N, "replication_factor": 1,
                            "assignments": [], "configs": []}], "timeout_ms": 60_000}
        started = time.monotonic()
        creator.sock.sendall(encode_request(19, 7, 1, body, client_id="wire-test"))
        md = _metadata(other, "bulk")  # answered while (or after) the topic is created
        md_s = time.monotonic() - started
        assert md.topics[0].error_code in (0, 3, 5)  # created, unknown or leader not available yet
        creator.sock.settimeout(60)
        (size,) = struct.unpack(">i", creator._read(4))
        _, resp = decode_response(19, 7, creator._read(size))
        create_s = time.monotonic() - started
        assert resp.topics[0].error_code == 0 and resp.topics[0].num_partitions == N
        assert md_s <= create_s
        after = _metadata(other, "bulk")
        assert after.topics[0].error_code == 0 and len(after.topics[0].partitions) == N
    finally:
        creator.close()
        other.close()
    assert len(kafka_broker.broker.log_manager.all_logs()) >= N


@pytest.mark.parametrize("owns_process", [True, False])
def test_bulk_create_freezes_its_state_only_in_a_broker_of_its_own(tmp_path: Path, owns_process: bool) -> None:
    """``kbroker serve`` keeps a big topic's objects out of full collections (kbroker.heap);
    an embedded broker leaves its host process's collector alone."""
    from kbroker.metadata.manager import BULK_PARTITIONS

    gc.unfreeze()
    try:
        with BrokerThread(tmp_path) as b:
            b.broker.owns_process = owns_process
            wire = WireClient(b.bootstrap)
            try:
                for name, n in (("small", 10), ("bulk", BULK_PARTITIONS)):
                    body = {"topics": [{"name": name, "num_partitions": n, "replication_factor": 1,
                                        "assignments": [], "configs": []}], "timeout_ms": 60_000}
                    frozen = gc.get_freeze_count()
                    resp = wire.call(19, 7, body)
                    assert resp.topics[0].error_code == 0
                    if name == "small" or not owns_process:
                        assert gc.get_freeze_count() == frozen
                    else:
                        # Every partition's log, segment and index objects, at least.
                        assert gc.get_freeze_count() > frozen + 3 * n
            finally:
                wire.close()
    finally:
        gc.unfreeze()
