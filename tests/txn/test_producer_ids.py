"""Producer id allocation: blocks persisted in the log dir, KIP-360 epoch bumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.txn.producer_ids import PRODUCER_IDS_FILE, ProducerIdError, ProducerIdManager


def test_ids_are_unique_across_restarts(tmp_path: Path) -> None:
    seen: list[int] = []
    for _ in range(3):
        m = ProducerIdManager(tmp_path, block_size=4)
        seen += [m.generate_producer_id() for _ in range(6)]  # crosses a block boundary
    assert len(set(seen)) == len(seen)
    assert seen[:6] == list(range(6))
    assert min(seen[6:12]) >= 8  # the rest of the second block is skipped after a restart


def test_unused_manager_reserves_nothing(tmp_path: Path) -> None:
    ProducerIdManager(tmp_path)
    assert not (tmp_path / PRODUCER_IDS_FILE).exists()


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    ProducerIdManager(tmp_path).generate_producer_id()
    path = tmp_path / PRODUCER_IDS_FILE
    path.write_text(path.read_text().replace("1000", "1001"))
    with pytest.raises(ProducerIdError):
        ProducerIdManager(tmp_path)


def test_epoch_bump(tmp_path: Path) -> None:
    m = ProducerIdManager(tmp_path)
    pid, epoch = m.init_idempotent_producer()
    assert epoch == 0
    assert m.init_idempotent_producer(pid, 0) == (pid, 1)
    stale = m.init_idempotent_producer(pid, 0)  # not the latest epoch: a new producer id
    assert stale[0] not in (pid,) and stale[1] == 0
    assert m.init_idempotent_producer(pid, 1) == (pid, 2)
    unknown = m.init_idempotent_producer(123_456, 3)
    assert unknown[0] != 123_456 and unknown[1] == 0
    m._epochs[pid] = 32_766  # exhausted epochs get a new id
    assert m.init_idempotent_producer(pid, 32_766)[0] != pid
