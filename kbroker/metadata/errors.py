"""The result type of metadata operations (error codes live in kbroker.codec.error_codes)."""

from __future__ import annotations

from kbroker.codec.error_codes import ErrorCode

#: (error_code, error_message); the message is None on success.
Result = tuple[int, str | None]
OK: Result = (ErrorCode.NONE, None)
