"""``emulate.version=4.1`` against a real Kafka 4.1 broker: the ranges kbroker's data holds for
4.1 are exactly what the reference broker advertises, and an emulating kbroker advertises them
wherever it serves the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbroker.handlers import registry
from kbroker.server.emulation import release_ranges
from kbroker.testing import BrokerThread
from tools.kafka_reference import KAFKA_VERSION, api_versions


def test_the_4_1_ranges_are_the_reference_broker_s(kafka_reference: Any, tmp_path: Path) -> None:
    release = ".".join(KAFKA_VERSION.split(".")[:2])
    reference = api_versions("127.0.0.1", kafka_reference.port)
    assert release_ranges(release) == reference
    with BrokerThread(tmp_path / "d", {"emulate.version": release}) as broker:
        host, port = broker.bootstrap.rsplit(":", 1)
        emulated = api_versions(host, int(port))
    own = {k: (h.advertised_min, h.versions.high) for k, h in registry().items()}
    common = {k: (max(lo, own[k][0]), min(hi, own[k][1])) for k, (lo, hi) in reference.items() if k in own}
    assert emulated == {k: r for k, r in common.items() if r[0] <= r[1]}
