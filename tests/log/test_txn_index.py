"""``TransactionIndex``: Kafka's .txnindex entries, search, truncation and damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbroker.log.errors import CorruptIndexError
from kbroker.log.txn_index import ENTRY_SIZE, AbortedTxn, TransactionIndex


def test_file_appears_with_the_first_entry_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000000.txnindex"
    idx = TransactionIndex(path, exists=False)
    assert not idx.maybe_nonempty and not path.exists()
    idx.append(AbortedTxn(1, 0, 5, 6))
    idx.append(AbortedTxn(2, 3, 9, 10))
    assert path.stat().st_size == 2 * ENTRY_SIZE and idx.needs_sync
    again = TransactionIndex(path, exists=True)
    assert again.entries() == [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10)]


def test_last_offsets_must_increase(tmp_path: Path) -> None:
    idx = TransactionIndex(tmp_path / "x.txnindex", exists=False)
    idx.append(AbortedTxn(1, 0, 5, 6))
    with pytest.raises(ValueError):
        idx.append(AbortedTxn(2, 0, 4, 6))


def test_collect_overlap_and_completeness(tmp_path: Path) -> None:
    idx = TransactionIndex(tmp_path / "x.txnindex", exists=False)
    idx.append(AbortedTxn(1, 0, 5, 3))  # LSO 3: another transaction was open from 3
    idx.append(AbortedTxn(2, 3, 9, 10))
    found = idx.collect(4, 8)
    assert found.aborted == [AbortedTxn(1, 0, 5, 3), AbortedTxn(2, 3, 9, 10)] and found.complete
    found = idx.collect(6, 20)
    assert found.aborted == [AbortedTxn(2, 3, 9, 10)] and not found.complete
    assert idx.collect(0, 3).complete and idx.collect(0, 3).aborted == [AbortedTxn(1, 0, 5, 3)]


def test_truncate_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "x.txnindex"
    idx = TransactionIndex(path, exists=False)
    for i in range(3):
        idx.append(AbortedTxn(i, 10 * i, 10 * i + 5, 10 * i + 6))
    idx.truncate_to(25)  # the marker at 25 goes
    assert [t.producer_id for t in idx.entries()] == [0, 1]
    assert path.stat().st_size == 2 * ENTRY_SIZE
    idx.truncate_to(100)
    assert len(idx.entries()) == 2
    idx.reset()
    assert not path.exists() and idx.entries() == [] and not idx.maybe_nonempty


def test_damaged_file_is_refused(tmp_path: Path) -> None:
    torn = tmp_path / "torn.txnindex"
    torn.write_bytes(bytes(ENTRY_SIZE + 3))
    idx = TransactionIndex(torn, exists=True)
    assert not idx.sane()
    with pytest.raises(CorruptIndexError):
        idx.entries()
    bad_version = tmp_path / "v.txnindex"
    bad_version.write_bytes(b"\x00\x07" + bytes(ENTRY_SIZE - 2))
    with pytest.raises(CorruptIndexError):
        TransactionIndex(bad_version, exists=True).entries()
