"""The one exception type of the configuration layer."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem: bad value, malformed file, unknown topic config.

    ``key`` names the offending configuration key when there is one; the message
    always names it too.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
