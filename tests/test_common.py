"""kbroker.common: the guarded background step."""

from __future__ import annotations

import logging

import anyio
import pytest

from kbroker.common import start_guarded


async def _fails() -> None:
    raise RuntimeError("boom")


def test_a_failing_background_step_is_logged_and_leaves_the_task_group_running(
        caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def after() -> None:
        ran.append("after")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            start_guarded(tg, logging.getLogger("t"), "test coordinator", _fails)
            await anyio.sleep(0.01)
            start_guarded(tg, logging.getLogger("t"), "test coordinator", after)

    with caplog.at_level(logging.ERROR, logger="t"):
        anyio.run(main)
    assert ran == ["after"]
    assert "test coordinator task _fails failed" in caplog.text and "RuntimeError: boom" in caplog.text
