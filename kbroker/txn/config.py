"""Names of the broker settings of the idempotent producer."""

from __future__ import annotations

from typing import Any

PRODUCER_ID_EXPIRATION_MS = "producer.id.expiration.ms"
PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS = "producer.id.expiration.check.interval.ms"
TRANSACTION_MAX_TIMEOUT_MS = "transaction.max.timeout.ms"


def int_setting(config: Any, key: str) -> int:
    """The broker's value of ``key`` (its Kafka default when unset)."""
    return int(config.get(key))
