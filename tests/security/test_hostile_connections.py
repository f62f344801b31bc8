"""Connection-rate measures under clients from ever new addresses: as Kafka expires idle
per-address sensors, the broker must not keep one per address it ever saw."""

from __future__ import annotations

from kbroker.clock import ManualClock
from kbroker.server.limits import ConnectionQuotas


def test_per_address_rates_of_idle_addresses_are_dropped() -> None:
    clock = ManualClock()
    quotas = ConnectionQuotas(clock, samples=11, window_seconds=1, ip_rate=lambda host: 100.0)
    addresses = 50_000
    for i in range(addresses):
        # A thousand new addresses every 20 s, each connecting once (an IPv6 prefix has billions).
        if i % 1000 == 0:
            clock.advance(20_000)
        assert quotas.ip_throttle_ms(f"2001:db8::{i:x}", "PLAINTEXT") == 0
    kept = sum(1 for key in quotas._rates if key is not None and key[0] == "ip")
    assert kept <= 11_000, kept
    # An address still within its window keeps its measure, and its quota is still enforced.
    for _ in range(1200):  # over 100/s across the 10 s a first burst is spread over
        quotas.ip_throttle_ms("198.51.100.7", "PLAINTEXT")
    assert quotas.ip_throttle_ms("198.51.100.7", "PLAINTEXT") > 0
