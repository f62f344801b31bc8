"""The pytest plugin (loaded by the ``kbroker`` entry point through :mod:`kbroker.testing`).

Per test: ``kafka_broker`` (a fresh embedded broker, data in the test's ``tmp_path``;
``@pytest.mark.kafka_broker(overrides={...})`` sets broker configs), ``kafka_bootstrap`` (its
``host:port``), ``kafka_cluster`` (etcd and broker subprocesses, shaped by
``@pytest.mark.kafka_cluster(brokers=..., overrides={...})``).

Per session: ``kafka_session_broker`` (one broker for the whole session; override the
``kafka_session_overrides`` fixture for its configs), ``kafka_session_bootstrap``,
``kafka_admin`` (a :class:`~kbroker.testing.admin.KafkaAdmin` on it). Per test on that broker:
``kafka_topic`` (a fresh topic's name; ``@pytest.mark.kafka_topic(partitions=3, configs={...})``),
``kafka_topic_factory`` (``make(partitions=1, configs=None, name=None) -> name``; the topics
are deleted after the test), ``kafka_clean`` (the session broker emptied by ``reset()`` before
the test).

``--kafka-bootstrap HOST:PORT`` (or ``KBROKER_TEST_BOOTSTRAP``) points the session fixtures at
a Kafka that is already running (an Apache Kafka, another kbroker): the same tests then run
against it. ``kafka_broker`` and ``kafka_cluster`` always start their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kbroker.testing.embedded import BrokerThread, ExternalKafka, local_cluster

if TYPE_CHECKING:  # imported when used: the plugin loads in every pytest session
    from kbroker.localcluster import LocalCluster
    from kbroker.testing.admin import KafkaAdmin

#: The environment variable that does what ``--kafka-bootstrap`` does.
BOOTSTRAP_ENV = "KBROKER_TEST_BOOTSTRAP"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--kafka-bootstrap``: run the session fixtures against a Kafka already running."""
    group = parser.getgroup("kbroker", "Kafka for tests (kbroker)")
    group.addoption(
        "--kafka-bootstrap", dest="kafka_bootstrap", default=None, metavar="HOST:PORT",
        help=f"bootstrap servers of a running Kafka for the session fixtures (kafka_session_broker, "
             f"kafka_topic, kafka_admin, ...) instead of an embedded kbroker; also ${BOOTSTRAP_ENV}")


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugin's markers."""
    config.addinivalue_line(
        "markers", "kafka_cluster(brokers=3, overrides=None): shape of the kafka_cluster fixture's cluster")
    config.addinivalue_line(
        "markers", "kafka_broker(overrides=None): broker configs of the kafka_broker fixture's broker")
    config.addinivalue_line(
        "markers", "kafka_topic(partitions=1, configs=None): shape of the kafka_topic fixture's topic")


def external_bootstrap(config: pytest.Config) -> str | None:
    """The external Kafka the session fixtures use, or None for an embedded kbroker."""
    value = config.getoption("kafka_bootstrap", None) or os.environ.get(BOOTSTRAP_ENV) or None
    return value.strip() if value else None


def _marker_kwargs(request: pytest.FixtureRequest, name: str, first: str) -> dict[str, Any]:
    """The closest ``name`` marker's arguments (one positional one is taken as ``first``)."""
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    kwargs = dict(marker.kwargs)
    if len(marker.args) > 1:
        raise pytest.UsageError(f"@pytest.mark.{name} takes at most one positional argument ({first})")
    if marker.args:
        kwargs[first] = marker.args[0]
    return kwargs


# -- a fresh broker per test ------------------------------------------------------------------

@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerThread]:
    """A running broker on an ephemeral port, data under the test's tmp_path; broker configs
    from ``@pytest.mark.kafka_broker(overrides={...})``."""
    overrides: Mapping[str, Any] | None = _marker_kwargs(request, "kafka_broker", "overrides").get("overrides")
    with BrokerThread(tmp_path / "kbroker-data", {k: str(v) for k, v in (overrides or {}).items()}) as b:
        yield b


@pytest.fixture
def kafka_bootstrap(kafka_broker: BrokerThread) -> str:
    """``host:port`` of the ``kafka_broker`` fixture."""
    return kafka_broker.bootstrap


# -- one broker per session -------------------------------------------------------------------

@pytest.fixture(scope="session")
def kafka_session_overrides() -> dict[str, str]:
    """Broker configs of the session broker: override this fixture in a conftest.py."""
    return {}


@pytest.fixture(scope="session")
def kafka_session_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                         kafka_session_overrides: Mapping[str, str]) -> Iterator[BrokerThread | ExternalKafka]:
    """One broker for the whole session (per xdist worker): an embedded kbroker, or the
    Kafka named by ``--kafka-bootstrap`` / ``KBROKER_TEST_BOOTSTRAP`` (its ``external`` is True)."""
    external = external_bootstrap(request.config)
    if external is not None:
        yield ExternalKafka(external)
        return
    overrides = {k: str(v) for k, v in kafka_session_overrides.items()}
    with BrokerThread(tmp_path_factory.mktemp("kbroker-session"), overrides) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_session_bootstrap(kafka_session_broker: BrokerThread | ExternalKafka) -> str:
    """``host:port`` of the session broker."""
    return kafka_session_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_admin(kafka_session_broker: BrokerThread | ExternalKafka) -> Iterator[KafkaAdmin]:
    """A :class:`KafkaAdmin` connected to the session broker."""
    with kafka_session_broker.admin() as admin:
        yield admin


@pytest.fixture
def kafka_clean(kafka_session_broker: BrokerThread | ExternalKafka, kafka_admin: KafkaAdmin) -> str:
    """The session broker's bootstrap, after :meth:`KafkaAdmin.reset` deleted every topic and
    group: the test starts on an empty broker."""
    kafka_admin.reset()
    return kafka_session_broker.bootstrap_servers


@pytest.fixture
def kafka_topic_factory(request: pytest.FixtureRequest, kafka_admin: KafkaAdmin) -> Iterator[Callable[..., str]]:
    """``make(partitions=1, configs=None, name=None) -> name``: creates a topic on the session
    broker (a unique name from the test's when ``name`` is None); all are deleted after the test."""
    from kbroker.testing.admin import unique_topic_name

    made: list[str] = []

    def make(partitions: int = 1, configs: Mapping[str, Any] | None = None, name: str | None = None, *,
             replication_factor: int = -1) -> str:
        topic = name if name is not None else unique_topic_name(request.node.name)
        kafka_admin.create_topic(topic, partitions, {k: str(v) for k, v in (configs or {}).items()},
                                 replication_factor=replication_factor)
        made.append(topic)
        return topic

    yield make
    for topic in made:
        # The test deleted it, or the broker is gone: nothing left to clean.
        with contextlib.suppress(Exception):
            kafka_admin.delete_topic(topic, wait=False)


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest, kafka_topic_factory: Callable[..., str]) -> str:
    """The name of a new topic on the session broker, deleted after the test; its shape from
    ``@pytest.mark.kafka_topic(partitions=..., configs={...})`` (1 partition otherwise)."""
    options = _marker_kwargs(request, "kafka_topic", "partitions")
    unknown = set(options) - {"partitions", "configs", "replication_factor"}
    if unknown:
        raise pytest.UsageError(f"@pytest.mark.kafka_topic: unknown argument(s) {sorted(unknown)}")
    return kafka_topic_factory(**options)


# -- a cluster of broker processes ------------------------------------------------------------

@pytest.fixture
def kafka_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    """A running local cluster (3 brokers unless the ``kafka_cluster`` marker says otherwise),
    its folder under the test's tmp_path. Skips without etcd; in CI (``CI`` set) that fails."""
    from kbroker.etcd.server import EtcdNotFound, EtcdServer

    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(str(e))
    marker = request.node.get_closest_marker("kafka_cluster")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    with local_cluster(tmp_path / "kbroker-cluster", options.get("brokers", 3), options.get("overrides")) as c:
        yield c
