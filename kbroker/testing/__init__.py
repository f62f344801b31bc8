"""Run a real kbroker inside a test process or any program; also a pytest plugin.

Without pytest::

    from kbroker.testing import Broker

    with Broker() as kafka:                    # an ephemeral port, data in a temporary folder
        kafka.bootstrap_servers                # "127.0.0.1:<port>"
        with kafka.admin() as admin:
            admin.create_topic("orders", partitions=3)
        kafka.reset()                          # every topic and group deleted

``BrokerThread(data_dir, overrides, clock=)`` is the same with the data folder given;
``KafkaContainer`` has testcontainers' methods (``start``, ``stop``, ``get_bootstrap_server``,
``with_env``...) over an embedded broker; ``local_cluster(brokers=3)`` runs etcd and broker
subprocesses (:class:`kbroker.localcluster.LocalCluster`).

Under pytest the fixtures of :mod:`kbroker.testing.plugin` are here too (this module is the
``kbroker`` pytest11 entry point): ``kafka_broker``, ``kafka_bootstrap``, ``kafka_cluster``,
``kafka_session_broker``, ``kafka_session_bootstrap``, ``kafka_admin``, ``kafka_topic``,
``kafka_topic_factory``, ``kafka_clean``; ``--kafka-bootstrap`` runs the session ones against
a Kafka already running. Importing this module without pytest installed works: the plugin
is then left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kbroker.testing.embedded import Broker, BrokerThread, ExternalKafka, local_cluster, make_config

if TYPE_CHECKING:
    from kbroker.testing.admin import KafkaAdmin, ResetError, unique_topic_name
    from kbroker.testing.containers import KafkaContainer

#: Imported on first use: this module loads in every pytest session (the plugin), and the
#: client and config code behind these would slow each one's start.
_LAZY = {"KafkaAdmin": "admin", "ResetError": "admin", "unique_topic_name": "admin",
         "KafkaContainer": "containers"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Broker", "BrokerThread", "ExternalKafka", "KafkaAdmin", "KafkaContainer", "ResetError",
    "local_cluster", "make_config", "unique_topic_name",
]

try:
    import pytest  # noqa: F401  (only to learn whether the plugin can load)
except ImportError:  # a program without pytest: the embedded broker needs none
    pass
else:
    from kbroker.testing.plugin import (  # noqa: F401  (the entry point's fixtures and hooks)
        kafka_admin,
        kafka_bootstrap,
        kafka_broker,
        kafka_clean,
        kafka_cluster,
        kafka_session_bootstrap,
        kafka_session_broker,
        kafka_session_overrides,
        kafka_topic,
        kafka_topic_factory,
        pytest_addoption,
        pytest_configure,
    )
