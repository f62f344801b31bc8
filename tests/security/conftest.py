"""Fixtures for tests against a real in-process broker over real sockets."""

from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401
