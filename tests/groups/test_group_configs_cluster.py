"""Group configs in a cluster: kept in etcd, seen by every broker, kept across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from wait_helpers import wait_until

from kbroker.config import generate_cluster_id
from kbroker.etcd.server import EtcdServer
from kbroker.testing import BrokerThread
from tests.etcd.conftest import etcd_server  # noqa: F401

pytestmark = pytest.mark.integration


def _broker(root: Path, etcd: EtcdServer, node: int, cluster_id: str) -> BrokerThread:
    return BrokerThread(root / f"b{node}", {
        "node.id": str(node), "etcd.endpoints": etcd.endpoint, "cluster.id": cluster_id,
        "broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "200",
        "controlled.shutdown.max.wait.ms": "1000"})


def _alter(bootstrap: str, group: str, key: str, value: str | None) -> None:
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until answered
    admin.incremental_alter_configs([res])[res].result(15)


def test_group_configs_live_in_etcd(tmp_path: Path, etcd_server: EtcdServer) -> None:  # noqa: F811
    cluster_id = generate_cluster_id()
    b0 = _broker(tmp_path, etcd_server, 0, cluster_id).start(timeout=30)
    b1 = _broker(tmp_path, etcd_server, 1, cluster_id).start(timeout=30)
    try:
        _alter(b0.bootstrap, "g", "share.record.lock.duration.ms", "20000")
        assert b0.broker.group_configs.get("g", "share.record.lock.duration.ms") == "20000"  # answered once applied
        wait_until(lambda: b1.broker.group_configs.get("g", "share.record.lock.duration.ms") == "20000", timeout=10)
        assert not (tmp_path / "b0" / "kbroker-group-configs.json").exists()  # not in a local file
        _alter(b1.bootstrap, "g", "consumer.session.timeout.ms", "50000")
        wait_until(lambda: b0.broker.group_configs.overrides("g") == {
            "share.record.lock.duration.ms": "20000", "consumer.session.timeout.ms": "50000"}, timeout=10)
        _alter(b1.bootstrap, "h", "share.isolation.level", "read_committed")
        _alter(b1.bootstrap, "h", "share.isolation.level", None)
        wait_until(lambda: b0.broker.group_configs.group_ids() == ["g"], timeout=10)
    finally:
        b1.stop()
        b0.stop()
    b0 = _broker(tmp_path, etcd_server, 0, cluster_id).start(timeout=30)
    try:  # a restarted broker reloads them from etcd with the cluster's image
        assert b0.broker.group_configs.overrides("g") == {
            "share.record.lock.duration.ms": "20000", "consumer.session.timeout.ms": "50000"}
    finally:
        b0.stop()
