"""Interceptors wrap the serving of requests from real clients; the HTTP endpoint serves routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaTimeoutError

from kbroker.handlers.api import CloseConnection
from kbroker.server.http import HttpEndpoint
from kbroker.server.intercept import Exchange, Handle
from kbroker.testing import BrokerThread


class Recording:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, str | None]] = []

    async def __call__(self, ex: Exchange, handle: Handle) -> Any:
        body = await handle()
        self.seen.append((ex.api_key, ex.api_version, ex.client_id))
        return body


def test_an_interceptor_sees_every_request_and_can_be_removed(tmp_path: Path) -> None:
    rec = Recording()
    with BrokerThread(tmp_path / "d") as broker:
        broker.broker.interceptors.add(rec)
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="seen")
        admin.list_topics()
        assert (18, rec.seen[0][1], "seen") == rec.seen[0]  # ApiVersions first
        assert any(k == 3 for k, _, _ in rec.seen)  # Metadata
        broker.broker.interceptors.remove(rec)
        n = len(rec.seen)
        admin.list_topics()
        admin.close()
        assert len(rec.seen) == n


def test_an_interceptor_that_closes_or_fails_ends_only_that_request(tmp_path: Path) -> None:
    calls: list[int] = []

    async def refuse_produce(ex: Exchange, handle: Handle) -> Any:
        if ex.api_key == 0:
            calls.append(1)
            if len(calls) == 1:
                raise CloseConnection("injected")
            raise RuntimeError("interceptor bug")  # answered UNKNOWN_SERVER_ERROR (-1)
        return await handle()

    with BrokerThread(tmp_path / "d") as broker:
        broker.broker.interceptors.add(refuse_produce)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, request_timeout_ms=3000,
                          max_block_ms=5000)
        with pytest.raises(Exception):  # noqa: B017 - the closed connection, then the server error
            p.send("t", b"x").get(10)
        with pytest.raises(Exception):  # noqa: B017
            p.send("t", b"y").get(10)
        p.close(1)
        broker.broker.interceptors.remove(refuse_produce)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap)
        try:
            assert p.send("t", b"z").get(10).offset == 0  # neither x nor y was applied
        except KafkaTimeoutError:  # pragma: no cover - a failure message with context
            pytest.fail("the broker stopped serving after an interceptor failed")
        p.close()
    assert len(calls) >= 2


def test_the_http_endpoint_serves_routes_on_an_ephemeral_port() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(_: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            ep = HttpEndpoint("127.0.0.1", 0, [Route("/hello", hello)])
            await ep.start(tg)
            assert ep.port > 0
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{ep.port}/hello")
                assert (r.status_code, r.text) == (200, "hello")
                assert (await client.get(f"http://127.0.0.1:{ep.port}/nope")).status_code == 404
            await ep.stop()
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{ep.port}/hello")

    anyio.run(main)


def test_the_http_endpoint_refuses_a_taken_port() -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            first = HttpEndpoint("127.0.0.1", 0, [])
            await first.start(tg)
            with pytest.raises(OSError):
                await HttpEndpoint("127.0.0.1", first.port, []).start(tg)
            await first.stop()

    anyio.run(main)
