"""Broker settings of the idempotent producer, read tolerantly.

``producer.id.expiration.ms`` and ``transaction.max.timeout.ms`` are Kafka broker
configs that kbroker's config table may not list yet; an unlisted key given anyway
lands in ``BrokerConfig.unknown`` and is honoured from there.
"""

from __future__ import annotations

from typing import Any

PRODUCER_ID_EXPIRATION_MS = "producer.id.expiration.ms"
PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS = "producer.id.expiration.check.interval.ms"
TRANSACTION_MAX_TIMEOUT_MS = "transaction.max.timeout.ms"

#: Kafka's defaults.
DEFAULTS = {
    PRODUCER_ID_EXPIRATION_MS: 86_400_000,
    PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS: 600_000,
    TRANSACTION_MAX_TIMEOUT_MS: 900_000,
}


def int_setting(config: Any, key: str) -> int:
    """The broker's value of ``key`` (listed or not), else Kafka's default."""
    try:
        return int(config.get(key))
    except Exception:  # noqa: BLE001 - an unlisted key raises ConfigError; fall back below
        pass
    raw = getattr(config, "unknown", {}).get(key)
    if raw is not None:
        try:
            return int(str(raw).strip())
        except ValueError:
            pass
    return DEFAULTS[key]
