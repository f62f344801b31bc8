"""Producer id allocation, unique across restarts (Kafka's ``ProducerIdManager``).

Ids are handed out from blocks of :data:`BLOCK_SIZE`; reserving a block first
persists its end in ``kbroker-producer-ids`` in the first log dir, so after a restart
allocation resumes past every id that may have been handed out (the unused rest of a
block is skipped, as in Kafka).

In a cluster the blocks come from an asynchronous :data:`BlockSource` shared by every
broker (Kafka's RPCProducerIdManager asking the controller): callers await
:meth:`ProducerIdManager.ready` before allocating, so the allocation itself never
blocks the event loop.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from kbroker.fs import read_text, store_for
from kbroker.records.crc import crc32c

log = logging.getLogger(__name__)

PRODUCER_IDS_FILE = "kbroker-producer-ids"
BLOCK_SIZE = 1000
_VERSION = 1
#: Kafka treats an epoch this high as exhausted: the producer gets a new id instead.
MAX_EPOCH = 2**15 - 1
#: Idempotent producers whose epoch a later InitProducerId may bump (least recently used dropped).
_MAX_TRACKED = 100_000
_INT64_MAX = 2**63 - 1


#: Reserves ``block_size`` ids for this broker, cluster-wide; the first id of the block.
BlockSource = Callable[[int], Awaitable[int]]


class ProducerIdError(Exception):
    """The producer id file is unreadable or ids are exhausted."""


class ProducerIdsUnavailable(ProducerIdError):
    """No block of ids could be had from the cluster just now; the client retries (as Kafka's
    COORDINATOR_LOAD_IN_PROGRESS while its broker waits for a block)."""


class ProducerIdManager:
    """Allocates producer ids and bumps epochs of idempotent producers (KIP-360)."""

    def __init__(self, directory: Path, block_size: int = BLOCK_SIZE, *,
                 block_source: BlockSource | None = None) -> None:
        """``block_source`` given (a cluster): blocks come from it and the local file is not used."""
        self.path = Path(directory) / PRODUCER_IDS_FILE
        self.block_size = block_size
        self._source = block_source
        self._fetch_lock = anyio.Lock() if block_source is not None else None
        self._next = 0
        self._block_end = 0  # nothing reserved yet
        self._persisted_end = self._read() if block_source is None else 0
        #: producer id -> the latest epoch handed out for it.
        self._epochs: OrderedDict[int, int] = OrderedDict()

    # -- persistence ---------------------------------------------------------------------
    def _read(self) -> int:
        try:
            text = read_text(self.path)
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
        store_for(self.path).write_atomic(self.path, f"{body} {crc32c(body.encode()):08x}\n".encode())
        self._persisted_end = end
        self._next, self._block_end = start, end
        log.info("reserved producer id block [%d, %d)", start, end)

    async def ready(self) -> None:
        """Make sure the next :meth:`generate_producer_id` has an id at hand.

        Without a block source this does nothing (a local block is reserved synchronously,
        a small file write). With one, an exhausted block is replaced by a block from the
        source; concurrent callers share one fetch. Raises :class:`ProducerIdsUnavailable`
        when the source fails.
        """
        if self._source is None or self._next < self._block_end:
            return
        assert self._fetch_lock is not None
        async with self._fetch_lock:
            if self._next < self._block_end:
                return  # another caller fetched meanwhile
            try:
                start = await self._source(self.block_size)
            except Exception as e:
                raise ProducerIdsUnavailable(f"no producer id block: {e}") from e
            if start < 0 or start + self.block_size > _INT64_MAX:
                raise ProducerIdError(f"producer id block at {start} is out of range")
            self._next, self._block_end = start, start + self.block_size
            log.info("got producer id block [%d, %d)", start, self._block_end)

    # -- allocation ----------------------------------------------------------------------
    def generate_producer_id(self) -> int:
        """A producer id never handed out before (by this data dir; in a cluster, by any broker).

        With a block source, :meth:`ready` must have been awaited since the block ran out
        (:class:`ProducerIdsUnavailable` otherwise).
        """
        if self._next >= self._block_end:
            if self._source is not None:
                raise ProducerIdsUnavailable("the producer id block is used up; await ready() first")
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
