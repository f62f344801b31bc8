"""Calling a handler directly, for tests of how long it holds the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from kbroker.codec import decode_request, encode_request
from kbroker.handlers.api import RequestContext, Session


def handler_context(api_key: int, version: int, body: dict[str, Any], broker: Any) -> RequestContext:
    """A request context for ``body`` (encoded and decoded as on the wire) from a PLAINTEXT client."""
    request = decode_request(encode_request(api_key, version, 1, body)[4:])
    return RequestContext(broker, Session("PLAINTEXT", "127.0.0.1", 1), request)


def run_counting_yields(coro: Any) -> tuple[Any, int]:
    """Run ``coro`` on a fresh event loop; its result and how many turns the loop took meanwhile."""
    yields = 0

    async def main() -> Any:
        nonlocal yields
        task = asyncio.ensure_future(coro)
        while not task.done():
            yields += 1
            await asyncio.sleep(0)
        return task.result()

    return asyncio.run(main()), yields
