"""Fixtures for the group coordinator tests."""

from __future__ import annotations

import pytest

from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
