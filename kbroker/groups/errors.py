"""The Kafka error codes the group coordinator answers with."""

from __future__ import annotations

from kbroker.codec.error_codes import ErrorCode as Errors

__all__ = ["Errors", "GroupError"]


class GroupError(Exception):
    """A request-level failure carrying the error code to answer with."""

    def __init__(self, code: Errors, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
