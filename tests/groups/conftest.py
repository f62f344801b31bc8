"""Fixtures for the group coordinator tests."""

from __future__ import annotations

import pytest

from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _fresh_worker_registry() -> None:
    """Each test reports only its own consumer workers when a wait times out."""
    from . import clients

    clients._live_workers.clear()
