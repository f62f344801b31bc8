"""IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT per config key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kbroker.codec.versions import VersionRange
from kbroker.handlers.alter_configs import answer_alter
from kbroker.handlers.api import RequestContext
from kbroker.metadata.config_resources import ConfigOp

API_KEY = 44
VERSIONS = VersionRange(0, 1)


async def handle(ctx: RequestContext) -> Mapping[str, Any]:
    return await answer_alter(ctx, lambda c: ConfigOp(c.name, c.config_operation, c.value), incremental=True)
