"""Follower logs for the fetcher tests: a real PartitionLog on disk.

Where the log already has the follower methods (``append_as_follower``, ``latest_epoch``,
``end_offset_for_epoch``), the PartitionLog itself is used. Otherwise :class:`EpochTrackingLog`
wraps it: appends go through the real log batch by batch (same offsets, each batch's own
leader epoch) and the epochs are tracked in memory with Kafka's ``endOffsetFor`` rules.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbroker.clock import Clock
from kbroker.log import LogConfig, PartitionLog
from kbroker.log.errors import LogError
from kbroker.log.producer_state import AppendOrigin
from kbroker.records.batch import iter_headers, validate_batches

HAS_FOLLOWER_METHODS = all(hasattr(PartitionLog, n) for n in ("append_as_follower", "latest_epoch",
                                                               "end_offset_for_epoch"))


class EpochTrackingLog:
    """A PartitionLog with the follower methods a fetcher needs."""

    def __init__(self, plog: PartitionLog) -> None:
        self.plog = plog
        self.epochs: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plog, name)

    @property
    def log_start_offset(self) -> int:
        return self.plog.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.plog.log_end_offset

    @property
    def high_watermark(self) -> int:
        return self.plog.high_watermark

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1][0] if self.epochs else -1

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        if not self.epochs or epoch == -1:
            return -1, -1
        if epoch == self.latest_epoch:
            return epoch, self.log_end_offset
        keys = [e for e, _ in self.epochs]
        i = bisect.bisect_right(keys, epoch)
        if i == len(self.epochs):
            return -1, -1
        if i == 0:
            return epoch, self.epochs[0][1]
        return self.epochs[i - 1][0], self.epochs[i][1]

    def append_as_follower(self, records: bytes | memoryview) -> None:
        data = bytes(records)
        validate_batches(data, None)  # CRCs
        for pos, h in iter_headers(data):
            if h.base_offset != self.log_end_offset:
                raise LogError(f"out of order: batch at {h.base_offset}, log end {self.log_end_offset}", -1)
            self.plog.append(data[pos: pos + h.size], leader_epoch=h.partition_leader_epoch,
                             origin=AppendOrigin.COORDINATOR)
            if h.partition_leader_epoch > self.latest_epoch:
                self.epochs.append((h.partition_leader_epoch, h.base_offset))

    def truncate_to(self, offset: int) -> None:
        self.plog.truncate_to(offset)
        self.epochs = [(e, s) for e, s in self.epochs if s < offset]

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.plog.truncate_fully_and_start_at(offset)
        self.epochs = []

    def update_high_watermark(self, offset: int) -> int:
        return self.plog.update_high_watermark(offset)

    def detach_records_before(self, offset: int) -> tuple[int, list[Any]]:
        return self.plog.detach_records_before(offset)

    def delete_segments_async(self, segments: Sequence[Any]) -> int:
        return self.plog.delete_segments_async(segments)


def open_follower_log(directory: Path, clock: Clock, config: LogConfig | None = None) -> Any:
    """A follower log in ``directory`` (named ``<topic>-<partition>``) whose HW does not follow its LEO."""
    plog = PartitionLog(directory, config or LogConfig(), clock)
    plog.high_watermark_follows_leo = False
    return plog if HAS_FOLLOWER_METHODS else EpochTrackingLog(plog)
