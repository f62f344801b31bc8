"""Fixtures for tests against a real in-process broker over real sockets."""

from authz_support import authorizer  # noqa: F401

from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401
