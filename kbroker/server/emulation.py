"""API version emulation (``emulate.version``, ``kbroker serve --emulate X.Y``): the broker
advertises the ApiVersions ranges of an Apache Kafka release and refuses versions outside them
as that release would, so a client's behaviour against an older (or exactly that) Kafka shows
up locally.

The ranges per release are facts read off each release's ``kafka-clients`` jar
(``data/kafka_api_versions.json``, made by ``tools/kafka-api-versions/generate.py``): what
``ApiVersionsResponse`` lists for a broker listener with default settings (a ZooKeeper broker
for 2.8 to 3.9, a KRaft broker from 4.0; unstable versions and the client telemetry APIs left
out). kbroker advertises the intersection of that release's ranges with its own: an API or
version the release had and kbroker does not serve is left out, and said once at start.

A request outside the advertised ranges is refused as Kafka refuses a version it does not
know: ApiVersions is answered UNSUPPORTED_VERSION in version 0, listing ApiVersions' own range
(KIP-511), any other API closes the connection. The feature fields stay kbroker's own: a
release's finalized features (``transaction.version`` 2 in 4.x, say) tell clients to use
protocol kbroker may not serve, which is exactly what emulation must not do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from kbroker.codec import encode_body
from kbroker.codec.apis import API_VERSIONS_KEY, api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.handlers import registry
from kbroker.handlers.api import CloseConnection, EncodedBody
from kbroker.server.intercept import Body, Exchange, Handle

log = logging.getLogger(__name__)

#: (min, max) versions by API key.
Ranges = Mapping[int, tuple[int, int]]


@cache
def _data() -> dict[str, Any]:
    text = resources.files("kbroker.server").joinpath("data/kafka_api_versions.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def releases() -> list[str]:
    """The Kafka releases that can be emulated (``"2.8"``, ``"3.0"``, ...), oldest first."""
    return list(_data()["releases"])


def release_ranges(release: str) -> dict[int, tuple[int, int]]:
    """What a broker of Kafka ``release`` advertises: (min, max) by API key; KeyError when the
    release is not one of :func:`releases`."""
    entry = _data()["releases"][release]
    return {int(k): (lo, hi) for k, (lo, hi) in entry["api_keys"].items()}


def release_patch(release: str) -> str:
    """The patch release the ranges were read from (``"3.6.2"`` for ``"3.6"``)."""
    return str(_data()["releases"][release]["kafka"])


def api_name(api_key: int) -> str:
    """Kafka's name of an API (``"Produce"``), known for every key any covered release has."""
    name = _data()["api_names"].get(str(api_key))
    return str(name) if name is not None else f"API key {api_key}"


def intersect(release: Ranges, own: Ranges) -> tuple[dict[int, tuple[int, int]], list[str]]:
    """The ranges to advertise (the release's within kbroker's ``own``) and, for the log, what
    of the release's ranges kbroker cannot offer, one phrase per API."""
    out: dict[int, tuple[int, int]] = {}
    lacking: list[str] = []
    for key, (lo, hi) in sorted(release.items()):
        mine = own.get(key)
        if mine is None:
            lacking.append(f"{api_name(key)} (v{lo}-v{hi})")
            continue
        low, high = max(lo, mine[0]), min(hi, mine[1])
        if low > high:
            lacking.append(f"{api_name(key)} (v{lo}-v{hi}; kbroker serves v{mine[0]}-v{mine[1]})")
            continue
        out[key] = (low, high)
        missing = [f"v{a}" if a == b else f"v{a}-v{b}" for a, b in ((lo, low - 1), (high + 1, hi)) if a <= b]
        if missing:
            lacking.append(f"{api_name(key)} {' and '.join(missing)}")
    return out, lacking


class ApiVersionEmulation:
    """An interceptor advertising and enforcing the API version ranges of one Kafka release."""

    def __init__(self, release: str, ranges: Ranges) -> None:
        self.release = release
        #: What is advertised: (min, max) by API key.
        self.ranges: Mapping[int, tuple[int, int]] = dict(ranges)
        # The answer per ApiVersions version, with the handler's body it was made from: the
        # handler answers with one template per version, so this encodes once per version.
        self._answers: dict[int, tuple[Mapping[str, Any], EncodedBody]] = {}
        lo, hi = self.ranges.get(API_VERSIONS_KEY, (0, 0))
        body = {"error_code": ErrorCode.UNSUPPORTED_VERSION,
                "api_keys": [{"api_key": API_VERSIONS_KEY, "min_version": lo, "max_version": hi}]}
        # Encoded in v0 whatever the request's version: what Kafka sends, and all a client can
        # read from a broker that does not know its version (ApiVersions' header is v0 always).
        self._unsupported = EncodedBody(body, encode_body(api_table()[API_VERSIONS_KEY], "response", 0, body))

    @classmethod
    def for_release(cls, release: str, own: Ranges | None = None) -> ApiVersionEmulation:
        """The emulation of ``release`` for a broker serving ``own`` (default: what kbroker's
        handlers advertise); logs what of the release kbroker cannot offer. ValueError for a
        release not covered."""
        if own is None:
            own = {k: (h.advertised_min, h.versions.high) for k, h in registry().items()}
        if release not in _data()["releases"]:
            raise ValueError(f"cannot emulate Kafka {release}: known releases are {', '.join(releases())}")
        ranges, lacking = intersect(release_ranges(release), own)
        log.info("emulating the API versions of Apache Kafka %s (%d APIs)", release_patch(release), len(ranges))
        if lacking:
            log.warning("Kafka %s offers what kbroker cannot, left out of ApiVersions: %s",
                        release, ", ".join(lacking))
        return cls(release, ranges)

    def api_keys(self) -> list[dict[str, int]]:
        """The ApiVersions ``api_keys`` list."""
        return [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in sorted(self.ranges.items())]

    async def __call__(self, exchange: Exchange, handle: Handle) -> Body:
        key, version = exchange.api_key, exchange.api_version
        advertised = self.ranges.get(key)
        allowed = advertised is not None and advertised[0] <= version <= advertised[1]
        if key == API_VERSIONS_KEY:
            if not allowed:
                return self._unsupported
            body = await handle()
            if body is None or body.get("error_code", 0) != ErrorCode.NONE:
                return body  # INVALID_REQUEST (a bad client software name) stays as it is
            return self._answer(version, body)
        if not allowed:
            raise CloseConnection(f"{api_name(key)} v{version} is not supported by Kafka {self.release}")
        return await handle()

    def _answer(self, version: int, body: Mapping[str, Any]) -> EncodedBody:
        cached = self._answers.get(version)
        if cached is not None and cached[0] is body:
            return cached[1]
        out = dict(body)
        out["api_keys"] = self.api_keys()
        answer = EncodedBody(out, encode_body(api_table()[API_VERSIONS_KEY], "response", version, out))
        self._answers[version] = (body, answer)
        return answer
