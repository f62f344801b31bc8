"""Errors raised by the log layer, each carrying the Kafka error code to answer with."""

from __future__ import annotations

OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
RECORD_LIST_TOO_LARGE = 18
KAFKA_STORAGE_ERROR = 56


class LogError(Exception):
    """Base class of log-layer errors; ``error_code`` is the Kafka protocol error code."""

    error_code: int = KAFKA_STORAGE_ERROR

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        if error_code is not None:
            self.error_code = error_code


class OffsetOutOfRange(LogError):
    """A fetch or truncation offset outside ``[log_start_offset, log_end_offset]``."""

    error_code = OFFSET_OUT_OF_RANGE


class CorruptIndexError(LogError):
    """An index file that fails its sanity check; the owning segment rebuilds it from the log."""

    error_code = CORRUPT_MESSAGE


class KafkaStorageError(LogError):
    """An unrecoverable problem with a log directory (duplicate partition, I/O failure)."""

    error_code = KAFKA_STORAGE_ERROR
