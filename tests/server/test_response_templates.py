"""ApiVersions' answer is encoded once per version and framed behind each request's header
(EncodedBody): the bytes are those of the normal encoding; invalid client software names,
client quotas and a rebuilt handler registry take the normal path."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from kbroker import handlers
from kbroker.clock import ManualClock
from kbroker.codec import decode_response, encode_request, encode_response_parts
from kbroker.codec.error_codes import ErrorCode
from kbroker.handlers import api_versions
from kbroker.handlers.api import EncodedBody, Session
from kbroker.security.quotas import QuotaManager, entity
from kbroker.server import dispatch as dispatch_module
from kbroker.server.dispatch import dispatch


class MemoryStore:
    """A quota StateStore in memory."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}

    def load(self, kind: str) -> Any:
        return self.docs.get(kind)

    def save(self, kind: str, document: Any) -> None:
        self.docs[kind] = document


def _services(quotas: QuotaManager | None = None) -> Any:
    return SimpleNamespace(client_quotas=quotas or QuotaManager(MemoryStore(), ManualClock()))


def _serve(services: Any, frame: bytes, session: Session | None = None) -> bytes:
    async def main() -> bytes:
        parts = await dispatch(services, session or Session("PLAINTEXT", "127.0.0.1", 1), frame)
        assert parts is not None
        return b"".join(parts)

    return anyio.run(main)


def _request(version: int, correlation_id: int, name: str = "kbroker-test", client_id: str = "c") -> bytes:
    body = {"client_software_name": name, "client_software_version": "1.0"} if version >= 3 else {}
    return encode_request(18, version, correlation_id, body, client_id=client_id)[4:]


@pytest.mark.parametrize("version", range(5))
def test_the_template_frames_the_bytes_of_the_normal_encoding(version: int) -> None:
    services = _services()
    for correlation_id in (0, 1, 2**31 - 1, -5):
        expected = b"".join(encode_response_parts(18, version, correlation_id, api_versions._answer()))
        assert _serve(services, _request(version, correlation_id)) == expected
    answer = api_versions.template(version)
    assert isinstance(answer, EncodedBody)
    assert api_versions.template(version) is answer  # encoded once


def test_an_invalid_client_software_name_answers_invalid_request() -> None:
    data = _serve(_services(), _request(3, 9, name="-bad name-"))
    correlation_id, body = decode_response(18, 3, data[4:])
    assert correlation_id == 9
    assert body.error_code == ErrorCode.INVALID_REQUEST and body.api_keys == []


def test_the_session_learns_the_client_software_from_a_templated_answer() -> None:
    session = Session("PLAINTEXT", "127.0.0.1", 1)
    _serve(_services(), _request(4, 1, name="librdkafka"), session)
    assert (session.client_software_name, session.client_software_version) == ("librdkafka", "1.0")


def test_with_client_quotas_the_answer_is_encoded_with_its_throttle() -> None:
    quotas = QuotaManager(MemoryStore(), ManualClock())
    anyio.run(quotas.alter, [(entity([("client-id", "c")]), {"request_percentage": 0.000001})])
    assert quotas.enabled
    services = _services(quotas)
    session = Session("PLAINTEXT", "127.0.0.1", 1)
    throttles = []
    for cid in range(3):
        _, body = decode_response(18, 3, _serve(services, _request(3, cid), session)[4:])
        assert body.error_code == 0 and body.api_keys == api_versions.api_keys()
        throttles.append(body.throttle_time_ms)
    assert max(throttles) > 0 and session.throttle_ms > 0
    # The shared template is untouched.
    assert api_versions.template(3)["throttle_time_ms"] == 0
    # Another client of the same broker still gets the template's bytes.
    expected = b"".join(encode_response_parts(18, 3, 4, api_versions._answer()))
    assert _serve(services, _request(3, 4, client_id="other")) == expected


def test_a_rebuilt_registry_gets_answers_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    before = api_versions.template(3)
    handlers.registry.cache_clear()
    try:
        handlers.registry()
        assert api_versions.template(3) is not before
        assert api_versions.template(3).encoded == before.encoded
    finally:
        handlers.registry.cache_clear()


def test_flexible_response_headers_carry_an_empty_tag_section() -> None:
    # No template answers on header v1 today; the framing must still match the codec's.
    body = {"throttle_time_ms": 0, "error_code": 0}
    framed = b"".join(encode_response_parts(12, 4, 77, body))
    encoded = b"".join(encode_response_parts(12, 4, 0, body))[4 + 5:]
    assert b"".join(dispatch_module._framed(12, 4, 77, EncodedBody(body, encoded))) == framed
    framed_v0 = b"".join(encode_response_parts(12, 3, 77, body))
    encoded_v0 = b"".join(encode_response_parts(12, 3, 0, body))[4 + 4:]
    assert b"".join(dispatch_module._framed(12, 3, 77, EncodedBody(body, encoded_v0))) == framed_v0
