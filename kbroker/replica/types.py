"""The values that cross the replica manager's API: partitions, fetch/append/offset results."""

from __future__ import annotations

from dataclasses import dataclass

from kbroker.codec.error_codes import ErrorCode

READ_UNCOMMITTED = 0
READ_COMMITTED = 1
#: ListOffsets' special timestamps.
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL_TIMESTAMP = -4
LATEST_TIERED_TIMESTAMP = -5
EARLIEST_PENDING_UPLOAD_TIMESTAMP = -6
CONSUMER_REPLICA_ID = -1


@dataclass(frozen=True, slots=True)
class AppendResult:
    """One partition's outcome of a produce (what ProduceResponse reports)."""

    error_code: int = ErrorCode.NONE
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    error_message: str | None = None
    record_errors: tuple[tuple[int, str], ...] = ()
    #: The last offset written (not in the response): what an acks=all produce waits for.
    last_offset: int = -1


@dataclass(frozen=True, slots=True)
class PartitionFetch:
    """What a fetcher asks of one partition."""

    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1
    #: Followers report their log start offset; consumers send -1.
    log_start_offset: int = -1


@dataclass(slots=True)
class FetchResult:
    """One partition's part of a fetch response."""

    error_code: int = ErrorCode.NONE
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: bytes | memoryview = b""
    #: ``(producer_id, first_offset)`` pairs; None unless read_committed.
    aborted_transactions: list[tuple[int, int]] | None = None
    #: KIP-392: the replica the consumer should fetch from instead (-1: this one).
    preferred_read_replica: int = -1
    #: A follower's fetch past the end of its last fetched epoch here: ``(epoch, end_offset)``
    #: of that epoch on the leader, where the follower must truncate.
    diverging_epoch: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class FetchParams:
    """The request-wide fetch settings."""

    max_wait_ms: int = 0
    min_bytes: int = 1
    max_bytes: int = 0x7FFFFFFF
    isolation_level: int = READ_UNCOMMITTED
    replica_id: int = CONSUMER_REPLICA_ID
    #: The consumer's rack (Fetch v11+, "" when it has none); None without client metadata
    #: (older versions), and such a consumer reads from leaders only (KIP-392).
    client_rack: str | None = None

    @property
    def is_follower(self) -> bool:
        return self.replica_id >= 0


@dataclass(frozen=True, slots=True)
class OffsetResult:
    """One partition's ListOffsets answer."""

    error_code: int = ErrorCode.NONE
    timestamp: int = -1
    offset: int = -1
    leader_epoch: int = -1
