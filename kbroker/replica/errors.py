"""Partition-level failures of the data path (codes in kbroker.codec.error_codes)."""

from __future__ import annotations


class PartitionError(Exception):
    """A partition-level failure carrying the Kafka error code to answer with."""

    def __init__(self, error_code: int, message: str | None = None,
                 record_errors: list[tuple[int, str]] | None = None) -> None:
        super().__init__(message or f"error {error_code}")
        self.error_code = error_code
        self.message = message
        #: (index in the batch, reason) of each rejected record (ProduceResponse v8+, KIP-467).
        self.record_errors = record_errors or []
