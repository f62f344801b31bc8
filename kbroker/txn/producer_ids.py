"""Producer id allocation, unique across restarts (Kafka's ``ProducerIdManager``).

Ids are handed out from blocks of :data:`BLOCK_SIZE`; reserving a block first
persists its end in ``kbroker-producer-ids`` in the first log dir, so after a restart
allocation resumes past every id that may have been handed out (the unused rest of a
block is skipped, as in Kafka).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from kbroker.fs import atomic_write
from kbroker.records.crc import crc32c

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

PRODUCER_IDS_FILE = "kbroker-producer-ids"
BLOCK_SIZE = 1000
_VERSION = 1
#: Kafka treats an epoch this high as exhausted: the producer gets a new id instead.
MAX_EPOCH = 2**15 - 1
#: Idempotent producers whose epoch a later InitProducerId may bump (least recently used dropped).
_MAX_TRACKED = 100_000
_INT64_MAX = 2**63 - 1


class ProducerIdError(Exception):
    """The producer id file is unreadable or ids are exhausted."""


class ProducerIdManager:
    """Allocates producer ids and bumps epochs of idempotent producers (KIP-360)."""

    def __init__(self, directory: Path, block_size: int = BLOCK_SIZE) -> None:
        self.path = Path(directory) / PRODUCER_IDS_FILE
        self.block_size = block_size
        self._next = 0
        self._block_end = 0  # nothing reserved yet
        self._persisted_end = self._read()
        #: producer id -> the latest epoch handed out for it.
        self._epochs: OrderedDict[int, int] = OrderedDict()

    # -- persistence ---------------------------------------------------------------------
    def _read(self) -> int:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        parts = text.split()
        try:
            version, end, crc = int(parts[0]), int(parts[1]), int(parts[2], 16)
        except (IndexError, ValueError) as e:
            raise ProducerIdError(f"malformed {self.path}: {text!r}") from e
        if version != _VERSION or crc != crc32c(f"{version} {end}".encode()):
            raise ProducerIdError(f"corrupt {self.path}: {text!r}")
        return end

    def _reserve_block(self) -> None:
        start = self._persisted_end
        end = start + self.block_size
        if end > _INT64_MAX:
            raise ProducerIdError("producer ids exhausted")
        body = f"{_VERSION} {end}"
        atomic_write(self.path, f"{body} {crc32c(body.encode()):08x}\n".encode())
        self._persisted_end = end
        self._next, self._block_end = start, end
        log.info("reserved producer id block [%d, %d)", start, end)

    # -- allocation ----------------------------------------------------------------------
    def generate_producer_id(self) -> int:
        """A producer id never handed out before by this broker's data dir."""
        if self._next >= self._block_end:
            self._reserve_block()
        pid = self._next
        self._next += 1
        return pid

    def init_idempotent_producer(self, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int]:
        """``(producer_id, epoch)`` for an idempotent (non-transactional) producer.

        A v3+ request naming the id and the latest epoch this broker handed out for it
        gets that epoch bumped; anything else gets a new id at epoch 0, which is what
        Kafka answers for every null transactional id (it never errors here, so a stale
        or unknown id just starts afresh).
        """
        latest = self._epochs.get(producer_id) if producer_id >= 0 else None
        if latest is not None and latest == producer_epoch and producer_epoch < MAX_EPOCH - 1:
            epoch = producer_epoch + 1
            self._epochs[producer_id] = epoch
            self._epochs.move_to_end(producer_id)
            return producer_id, epoch
        pid = self.generate_producer_id()
        self._epochs[pid] = 0
        if len(self._epochs) > _MAX_TRACKED:
            self._epochs.popitem(last=False)
        return pid, 0
