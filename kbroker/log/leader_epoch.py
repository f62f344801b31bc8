"""``LeaderEpochCache``: which leader epoch started at which offset (Kafka's ``LeaderEpochFileCache``).

Each partition dir holds ``leader-epoch-checkpoint``, in Kafka's text format::

    0               <- version
    2               <- entry count
    0 0             <- epoch start_offset
    3 1200

Entries are strictly increasing in both epoch and start offset. The file is rewritten
atomically on every change (epochs change rarely: once per leadership change, and when
the log is truncated at either end). Followers use it through OffsetForLeaderEpoch to
find where their log diverges from the leader's (KIP-101, KIP-279); consumers to detect
truncation after a leader change (KIP-320).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from kbroker.fs import store_for
from kbroker.log.checkpoint import CheckpointError

LEADER_EPOCH_CHECKPOINT_FILE = "leader-epoch-checkpoint"
#: Kafka's ``UNDEFINED_EPOCH`` and ``UNDEFINED_EPOCH_OFFSET``.
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

log = logging.getLogger(__name__)


class EpochEntry(NamedTuple):
    """A leader epoch and the first offset written in it."""

    epoch: int
    start_offset: int


def read_leader_epoch_checkpoint(path: Path) -> list[EpochEntry] | None:
    """The entries of a ``leader-epoch-checkpoint`` file; None if it does not exist.

    Raises :class:`CheckpointError` for a malformed file (bad header, count, line, or
    entries not increasing)."""
    try:
        text = store_for(path).read_bytes(path).decode()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path} is not text") from e
    lines = text.splitlines()
    try:
        version = int(lines[0])
        count = int(lines[1])
    except (IndexError, ValueError) as e:
        raise CheckpointError(f"malformed leader epoch checkpoint header in {path}") from e
    if version != 0:
        raise CheckpointError(f"unsupported leader epoch checkpoint version {version} in {path}")
    body = [line for line in lines[2:] if line.strip()]
    if len(body) != count:
        raise CheckpointError(f"{path} declares {count} entries but holds {len(body)}")
    entries: list[EpochEntry] = []
    for line in body:
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError(line)
            entry = EpochEntry(int(parts[0]), int(parts[1]))
        except ValueError as e:
            raise CheckpointError(f"malformed line {line!r} in {path}") from e
        if entry.epoch < 0 or entry.start_offset < 0 or (
                entries and (entry.epoch <= entries[-1].epoch or entry.start_offset < entries[-1].start_offset)):
            raise CheckpointError(f"entry {line!r} out of order in {path}")
        entries.append(entry)
    return entries


class LeaderEpochCache:
    """The leader epochs of one partition log, backed by ``leader-epoch-checkpoint``.

    Not thread-safe on its own: the owning :class:`~kbroker.log.partition_log.PartitionLog`
    calls it under its lock.
    """

    def __init__(self, path: Path, entries: Iterable[EpochEntry] = (), *, write: bool = False) -> None:
        """``entries`` (increasing) are taken as they are; ``write`` persists them now."""
        self.path = path
        self._epochs: list[int] = []
        self._starts: list[int] = []
        for e in entries:
            self._epochs.append(e.epoch)
            self._starts.append(e.start_offset)
        #: The latest epoch, or -1 when empty (read on the append path: a plain attribute).
        self.latest_epoch = self._epochs[-1] if self._epochs else UNDEFINED_EPOCH
        #: Whether entries are in memory only (``assign(..., write=False)``), not yet in the file.
        self.unwritten = False
        if write:
            self._write()

    @classmethod
    def load(cls, path: Path) -> LeaderEpochCache:
        """The cache stored at ``path`` (empty if absent). Raises :class:`CheckpointError`."""
        return cls(path, read_leader_epoch_checkpoint(path) or ())

    # -- reading ---------------------------------------------------------------------------
    @property
    def entries(self) -> list[EpochEntry]:
        """The entries, oldest first (a copy)."""
        return [EpochEntry(e, s) for e, s in zip(self._epochs, self._starts, strict=True)]

    def __len__(self) -> int:
        return len(self._epochs)

    def latest_entry(self) -> EpochEntry | None:
        """The latest entry, or None when empty."""
        return EpochEntry(self._epochs[-1], self._starts[-1]) if self._epochs else None

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch the record at ``offset`` was written in (-1 when unknown)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """``(epoch, end offset)`` for ``requested_epoch`` (Kafka's ``endOffsetFor``): the largest
        epoch <= the requested one and the start offset of the next larger epoch; the log end
        offset for the latest epoch; the first larger epoch's start for an epoch below every
        entry; ``(-1, -1)`` for an undefined epoch or one above the latest."""
        if requested_epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        epochs = self._epochs
        if epochs and epochs[-1] == requested_epoch:
            return requested_epoch, log_end_offset
        higher = bisect.bisect_right(epochs, requested_epoch)
        if higher == len(epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            # Below every known epoch: the data was removed; the follower starts from the
            # first epoch we know.
            return requested_epoch, self._starts[0]
        return epochs[higher - 1], self._starts[higher]

    # -- changing --------------------------------------------------------------------------
    def assign(self, epoch: int, start_offset: int, *, write: bool = True) -> bool:
        """Record that ``epoch`` starts at ``start_offset``, as Kafka's ``assign``: nothing
        changes when ``epoch`` is the latest and ``start_offset`` is not lower than its
        start; otherwise entries with an epoch >= ``epoch`` or a start >= ``start_offset``
        are removed first (they contradict the new one). Returns whether anything changed
        (then the file was rewritten). Raises ValueError for a negative epoch or offset."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        epochs, starts = self._epochs, self._starts
        if epochs and epochs[-1] == epoch and start_offset >= starts[-1]:
            return False
        removed = 0
        while epochs and (epochs[-1] >= epoch or starts[-1] >= start_offset):
            removed += 1
            if removed > 1 or starts[-1] != start_offset:
                log.warning("leader epoch entry (%d, %d) of %s truncates conflicting entry (%d, %d)",
                            epoch, start_offset, self.path.parent.name, epochs[-1], starts[-1])
            epochs.pop()
            starts.pop()
        epochs.append(epoch)
        starts.append(start_offset)
        self.latest_epoch = epoch
        if write:
            self._write()
        else:
            self.unwritten = True  # the caller writes it (write_file) before relying on it
        return True

    def truncate_from_end(self, end_offset: int) -> bool:
        """Remove the entries starting at or after ``end_offset`` (the log was truncated
        there). Returns whether any went."""
        starts = self._starts
        if end_offset < 0 or not starts or starts[-1] < end_offset:
            return False
        keep = bisect.bisect_left(starts, end_offset)
        del self._epochs[keep:]
        del starts[keep:]
        self.latest_epoch = self._epochs[-1] if self._epochs else UNDEFINED_EPOCH
        self._write()
        return True

    def truncate_from_start(self, start_offset: int, *, write: bool = True) -> bool:
        """The log now starts at ``start_offset``: the entries starting at or below it are
        replaced by the last of them, moved to ``start_offset`` (an entry at exactly
        ``start_offset`` stays as it is). Returns whether anything changed. ``write`` False
        leaves the file to the next change: as Kafka's asynchronous flush, stale entries below
        the log start are harmless, the next open cuts them again."""
        starts = self._starts
        if not starts or starts[0] > start_offset:
            return False
        last = bisect.bisect_right(starts, start_offset) - 1
        if last == 0 and starts[0] == start_offset:
            return False
        epoch = self._epochs[last]
        del self._epochs[:last]
        del starts[:last]
        starts[0] = start_offset
        self._epochs[0] = epoch
        if write:
            self._write()
        return True

    def clear(self) -> None:
        """Remove every entry (the log was emptied and restarted elsewhere)."""
        if not self._epochs:
            return
        self._epochs.clear()
        self._starts.clear()
        self.latest_epoch = UNDEFINED_EPOCH
        self._write()

    def write_file(self) -> None:
        """Write entries an ``assign(..., write=False)`` left in memory only (a no-op otherwise)."""
        if self.unwritten:
            self._write()

    def _write(self) -> None:
        lines = ["0", str(len(self._epochs))]
        lines += [f"{e} {s}" for e, s in zip(self._epochs, self._starts, strict=True)]
        store_for(self.path).write_atomic(self.path, ("\n".join(lines) + "\n").encode())
        self.unwritten = False

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self.entries})"
