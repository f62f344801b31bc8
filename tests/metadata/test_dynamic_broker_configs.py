"""Dynamic broker configs in a cluster: the cluster-wide defaults ("" resource) and each broker's
own live in etcd, every broker applies them (its own over the defaults), and they survive restarts."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from kbroker.broker import Broker
from kbroker.codec.error_codes import ErrorCode
from kbroker.config import ConfigSource
from kbroker.etcd import EtcdClient
from kbroker.etcd.server import EtcdServer
from kbroker.metadata.config_resources import BROKER, DELETE, SET, ConfigOp, ConfigScope, alter_resource
from kbroker.metadata.dynamic_config import DYNAMIC_CONFIG_FILE
from kbroker.metadata.errors import OK
from kbroker.testing import make_config

pytestmark = pytest.mark.anyio
KEY = "log.cleaner.backoff.ms"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _until(check: Callable[[], object], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


@asynccontextmanager
async def _brokers(etcd: EtcdServer, root: Path, nodes: list[int], prefix: str) -> AsyncIterator[list[Broker]]:
    built = []
    for n in nodes:
        b = Broker(make_config(root / f"b{n}", {
            "node.id": str(n), "etcd.endpoints": etcd.endpoint, "etcd.prefix": prefix,
            "broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "200",
            "controlled.shutdown.max.wait.ms": "500"}))
        b.endpoints["PLAINTEXT"] = ("127.0.0.1", 9000 + n)
        built.append(b)
    try:
        async with anyio.create_task_group() as tg:
            for b in built:
                await b.metadata.start(tg)
            yield built
            for b in built:
                await b.metadata.shutdown()
            tg.cancel_scope.cancel()
    finally:
        for b in built:
            b.log_manager.shutdown()


def _scope(b: Broker) -> ConfigScope:
    return ConfigScope(b.node_id, b.configs, b.metadata)


async def _alter(b: Broker, name: str, value: str | None, *, incremental: bool = True,
                 validate_only: bool = False) -> object:
    op = ConfigOp(KEY, SET if value is not None or not incremental else DELETE, value)
    return await alter_resource(_scope(b), BROKER, name, [op] if value is not None or incremental else [],
                                incremental=incremental, validate_only=validate_only)


def _in_force(b: Broker) -> tuple[int, ConfigSource]:
    return int(b.config.get(KEY)), b.config.source(KEY)


async def test_defaults_and_own_configs_live_in_etcd_and_apply_on_every_broker(
        etcd_server: EtcdServer, tmp_path: Path) -> None:
    prefix = f"/t/{uuid.uuid4().hex}/"
    async with _brokers(etcd_server, tmp_path, [1, 2], prefix) as (a, b):
        assert await _alter(a, "", "12345") == OK
        # The receiving broker answers once it applied the change; the other follows its image.
        assert _in_force(a) == (12345, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
        await _until(lambda: _in_force(b) == (12345, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG))
        # A broker's own value wins over the default, on that broker only.
        assert await _alter(b, "2", "23456") == OK
        assert _in_force(b) == (23456, ConfigSource.DYNAMIC_BROKER_CONFIG)
        assert _in_force(a) == (12345, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
        # Nothing went to the local files: etcd is where they are kept.
        assert not (tmp_path / "b1" / DYNAMIC_CONFIG_FILE).exists()
        client = EtcdClient([etcd_server.endpoint])
        try:
            stored = await client.get(f"{prefix}configs/broker/default")
            own = await client.get(f"{prefix}configs/broker/2")
        finally:
            await client.aclose()
        assert stored is not None and json.loads(stored.value) == {KEY: "12345"}
        assert own is not None and json.loads(own.value) == {KEY: "23456"}
    # Restarted brokers get both back from etcd.
    async with _brokers(etcd_server, tmp_path, [1, 2], prefix) as (a, b):
        assert _in_force(a) == (12345, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
        assert _in_force(b) == (23456, ConfigSource.DYNAMIC_BROKER_CONFIG)
        # Removing the broker's own value uncovers the default; removing that, the static default.
        assert await _alter(b, "2", None) == OK
        assert _in_force(b) == (12345, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
        assert await _alter(b, "", None) == OK
        assert _in_force(b) == (15000, ConfigSource.DEFAULT_CONFIG)
        await _until(lambda: _in_force(a) == (15000, ConfigSource.DEFAULT_CONFIG))


async def test_invalid_validate_only_and_replacing_alter_configs(etcd_server: EtcdServer, tmp_path: Path) -> None:
    prefix = f"/t/{uuid.uuid4().hex}/"
    async with _brokers(etcd_server, tmp_path, [1, 2], prefix) as (a, b):
        code, _ = await _alter(a, "", "-5")  # type: ignore[misc]
        assert code == ErrorCode.INVALID_CONFIG
        assert await _alter(a, "", "777", validate_only=True) == OK
        assert _in_force(a)[1] == ConfigSource.DEFAULT_CONFIG
        assert a.metadata.dynamic_broker_configs(None) == {}
        # Another broker's resource is not this broker's to change.
        code, _ = await _alter(a, "2", "1")  # type: ignore[misc]
        assert code == ErrorCode.INVALID_REQUEST
        # AlterConfigs (not incremental) replaces the whole default set: without the key it goes.
        assert await _alter(a, "", "4444") == OK
        await _until(lambda: _in_force(b) == (4444, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG))
        assert await alter_resource(_scope(b), BROKER, "", [ConfigOp("log.cleaner.threads", SET, "1")],
                                    incremental=False, validate_only=False) == OK
        assert b.metadata.dynamic_broker_configs(None) == {"log.cleaner.threads": "1"}
        await _until(lambda: _in_force(a) == (15000, ConfigSource.DEFAULT_CONFIG))
