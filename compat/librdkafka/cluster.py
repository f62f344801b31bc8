"""librdkafka's suite against a local kbroker cluster (``python -m compat.librdkafka --cluster``).

Each test-runner run gets a fresh :class:`kbroker.localcluster.LocalCluster`: etcd and three
brokers, configured as librdkafka's own cluster tests run Apache Kafka (tests/cluster_testing.py:
``broker.rack=RACK<id>`` and the rack-aware replica selector), with topics of 3 replicas and 4
partitions by default (tests/scenarios/default.json). test.conf lists every broker.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from compat.broker import BrokerError
from kbroker.localcluster import ClusterError, LocalCluster

HERE = Path(__file__).resolve().parent
#: Tests seen passing against the cluster (run by default with --cluster; a failure fails the run).
CLUSTER_ALLOW = HERE / "tests.cluster.allow"
CLUSTER_BROKERS = 3
#: The tests that need several brokers (tests.exclude says why each is not run against one);
#: ``--cluster --all`` runs them with every test of tests.allow.
CLUSTER_CANDIDATES = ("0101_fetch_from_follower", "0107_topic_recreate", "0111_delay_create_topics",
                      "0098_consumer_txn")
#: The part of tests.cluster.allow that CI runs (``LIBRDKAFKA_SUITE=1``; ``LIBRDKAFKA_CLUSTER_SUITE=1``
#: runs all of it): tests that need several brokers (follower fetching, delayed topic creation,
#: transactions read by the Java producer's consumer; 0107_topic_recreate, 46 s, is in the full run).
#: Replicated produce, groups and transactions are covered in CI by tests/cluster with
#: confluent-kafka and kafka-python; the full list takes about 15 minutes.
CLUSTER_CI = ("0098_consumer_txn", "0101_fetch_from_follower", "0111_delay_create_topics")
RACK_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


class ClusterBroker:
    """The suite's broker interface (``start``, ``bootstrap``, ``alive``, ``tail``, ``stop``,
    ``data_dir``) over a local cluster."""

    def __init__(self, overrides: Mapping[str, str], log_path: Path, brokers: int = CLUSTER_BROKERS) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="kbroker-compat-cluster-"))
        self.log_path = log_path
        settings = {"num.partitions": "4", "replica.selector.class": RACK_SELECTOR, **overrides}
        self.cluster = LocalCluster(self.data_dir / "cluster", brokers, settings,
                                    per_broker={i: {"broker.rack": f"RACK{i}"} for i in range(brokers)})
        self.bootstrap = ""

    def start(self) -> ClusterBroker:
        try:
            self.cluster.start()
        except ClusterError as e:
            self._collect_logs()
            raise BrokerError(str(e)) from e
        self.bootstrap = self.cluster.bootstrap_servers
        return self

    def alive(self) -> bool:
        return all(self.cluster.alive(i) for i in range(self.cluster.brokers))

    def tail(self, n: int = 5) -> list[str]:
        """The last ``n`` lines of the first broker that is not running (else of broker 0)."""
        dead = [i for i in range(self.cluster.brokers) if not self.cluster.alive(i)]
        i = dead[0] if dead else 0
        try:
            lines = self.cluster.log_path(i).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return [f"broker {i}: {line}" for line in lines[-n:]]

    def _collect_logs(self) -> None:
        with open(self.log_path, "w") as out:
            for i in range(self.cluster.brokers):
                path = self.cluster.log_path(i)
                out.write(f"===== broker {i} =====\n")
                if path.exists():
                    out.write(path.read_text(errors="replace"))

    def stop(self) -> None:
        self.cluster.stop()
        self._collect_logs()
        shutil.rmtree(self.data_dir, ignore_errors=True)
