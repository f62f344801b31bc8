"""An etcd server per test module (skipped on a laptop without etcd; a failure in CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbroker.etcd.server import EtcdNotFound, EtcdServer


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    try:
        EtcdServer.executable()
    except EtcdNotFound as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(e))
    server = EtcdServer(Path(tmp_path_factory.mktemp("etcd")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
