"""The etcd server fixture of tests/etcd, shared with the cluster metadata tests."""

from tests.etcd.conftest import etcd_server  # noqa: F401
