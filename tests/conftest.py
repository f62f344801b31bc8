"""Suite-wide test tiers.

Every test that starts a broker (the ``kafka_broker``/``kafka_bootstrap`` fixtures or any
fixture built on them, ``BrokerThread``, a broker subprocess) or lives in ``tests/compat``
is marked ``integration`` here, at collection; the rest form the fast tier
(``make test-fast``: ``pytest -m "not integration"``). New tests are tiered without a marker.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient

TESTS = Path(__file__).resolve().parent
# Shared helpers (wait_helpers) import the same way under every import mode and xdist.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

#: Fixtures that start a broker; a test using one (even through another fixture) is integration.
BROKER_FIXTURES = frozenset({"kafka_broker", "kafka_bootstrap", "kafka_cluster", "live_dose", "kafka_reference",
                             "kafka_session_broker"})
#: Directories whose every test runs brokers or real clients against them.
INTEGRATION_DIRS = frozenset({"compat", "cluster"})
#: Helper modules that start brokers (subprocesses) when a test module imports them.
BROKER_MODULES = frozenset({"broker_process"})

#: The longest tests, at the two ends of the run: librdkafka's suite (71 items, about 9 minutes
#: together) first and the compat matrix last. Under ``--dist worksteal`` the first worker
#: starts on the suite and the second on the other end, then takes over the first worker's
#: queue from its tail, so neither trails the rest of the run.
RUN_FIRST = frozenset({"test_librdkafka_allowed_tests_pass"})
RUN_LAST = frozenset({"test_fast_matrix_has_no_regressions"})


def _starts_brokers(module: types.ModuleType | None) -> bool:
    if module is None:
        return False
    for value in vars(module).values():
        if value is BrokerThread:
            return True
        origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if origin in BROKER_MODULES:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration = pytest.mark.integration
    for item in items:
        rel = item.path.relative_to(TESTS) if item.path.is_relative_to(TESTS) else None
        if (BROKER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                or (rel is not None and rel.parts[0] in INTEGRATION_DIRS)
                or _starts_brokers(getattr(item, "module", None))):
            item.add_marker(integration)

    def place(item: pytest.Item) -> int:
        name = item.originalname if isinstance(item, pytest.Function) else ""
        return -1 if name in RUN_FIRST else 1 if name in RUN_LAST else 0

    items.sort(key=place)  # stable: everything else keeps its order


@pytest.fixture
def wire(kafka_broker: BrokerThread) -> Iterator[WireClient]:
    """A raw-protocol client connected to the test's in-process broker."""
    c = WireClient(kafka_broker.bootstrap)
    yield c
    c.close()
