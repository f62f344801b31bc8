"""What the log cleaner reports of a pass over one log (for DescribeLogDirs, the CLI and logs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CleaningSummary:
    """One cleaner pass over a partition log (Kafka's ``CleanerStats``, per log)."""

    #: Clock time the pass ended, in milliseconds since the epoch.
    ended_ms: int
    duration_ms: int
    segments_before: int
    segments_after: int
    bytes_before: int
    bytes_after: int
    records_read: int
    records_retained: int
    #: The cleaner checkpoint after the pass: offsets below it are clean.
    cleaned_up_to: int
