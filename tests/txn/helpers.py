"""Idempotent batches for the producer state tests."""

from __future__ import annotations

from kbroker.records.builder import build_batch


def pbatch(pid: int, epoch: int, seq: int, n: int = 1, *, ts: int | None = None, tag: str = "v") -> bytes:
    """A batch of ``n`` records from producer ``pid``/``epoch`` starting at sequence ``seq``."""
    return build_batch([(None, f"{tag}{seq + i}".encode(), (), ts) for i in range(n)],
                       producer_id=pid, producer_epoch=epoch, base_sequence=seq)
