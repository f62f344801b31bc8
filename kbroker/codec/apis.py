"""The API table: each API key's request and response schemas and header versions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kbroker.codec.schema import MessageSpec, all_messages
from kbroker.codec.versions import VersionRange

API_VERSIONS_KEY = 18


@dataclass(frozen=True)
class Api:
    """One Kafka API: its key, name and both message schemas."""

    key: int
    name: str
    request: MessageSpec
    response: MessageSpec

    @property
    def versions(self) -> VersionRange:
        return self.request.valid

    def is_flexible(self, version: int) -> bool:
        return version in self.request.flexible

    def request_header_version(self, version: int) -> int:
        return 2 if self.is_flexible(version) else 1

    def response_header_version(self, version: int) -> int:
        # ApiVersions answers on header v0 always, so a client that does not yet know
        # the broker's versions can read the response (KIP-511).
        if self.key == API_VERSIONS_KEY:
            return 0
        return 1 if self.is_flexible(version) else 0


@cache
def api_table() -> dict[int, Api]:
    """Every API with both a request and a response schema, by key."""
    msgs = all_messages()
    table: dict[int, Api] = {}
    for name, spec in msgs.items():
        if spec.type != "request" or spec.api_key is None:
            continue
        base = name[: -len("Request")]
        resp = msgs.get(base + "Response")
        if resp is None:
            continue
        table[spec.api_key] = Api(spec.api_key, base, spec, resp)
    return dict(sorted(table.items()))


def api_by_name(name: str) -> Api:
    """Look an API up by its name, e.g. ``"Produce"``."""
    for api in api_table().values():
        if api.name == name:
            return api
    raise KeyError(name)
