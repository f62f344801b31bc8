"""Config value types, sources, validators and the :class:`ConfigDef` record.

Parsing mirrors Kafka's ``ConfigDef.parseType``: values are trimmed, booleans are
``true``/``false`` in any case, integers are plain decimal within the Java type's
range, lists are comma-separated with whitespace around commas ignored.
The numeric enum values are the ones DescribeConfigs puts on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

from kbroker.config.errors import ConfigError

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1

_RANGES = {
    "SHORT": (-(2**15), 2**15 - 1),
    "INT": (-(2**31), 2**31 - 1),
    "LONG": (-(2**63), 2**63 - 1),
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LIST_SPLIT = re.compile(r"\s*,\s*")


class ConfigType(IntEnum):
    """A config's type, numbered as DescribeConfigs' ``config_type``."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """Where a config value came from, numbered as DescribeConfigs' ``config_source``."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    DYNAMIC_CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


class UpdateMode(StrEnum):
    """Kafka's 'update mode' of a broker config."""

    READ_ONLY = "read-only"
    PER_BROKER = "per-broker"
    CLUSTER_WIDE = "cluster-wide"


Validator = Callable[[Any], "str | None"]
"""Checks a parsed value; returns the reason it is invalid, or None."""


def at_least(minimum: int | float) -> Validator:
    """Validator: the value is ``None`` or ``>= minimum``."""

    def check(value: Any) -> str | None:
        if value is not None and value < minimum:
            return f"Value must be at least {minimum}"
        return None

    return check


def between(minimum: int | float, maximum: int | float, *extra: int) -> Validator:
    """Validator: the value is ``None``, within ``[minimum, maximum]``, or one of ``extra``."""

    def check(value: Any) -> str | None:
        if value is None or value in extra or minimum <= value <= maximum:
            return None
        also = f" (or {', '.join(map(str, extra))})" if extra else ""
        return f"Value must be between {minimum} and {maximum}{also}"

    return check


def one_of(*choices: str) -> Validator:
    """Validator: the string value is one of ``choices`` (exact case)."""

    def check(value: Any) -> str | None:
        if value is not None and value not in choices:
            return f"String must be one of: {', '.join(choices)}"
        return None

    return check


def each_of(*choices: str) -> Validator:
    """Validator: every element of the list value is one of ``choices``."""

    def check(value: Any) -> str | None:
        for item in value or ():
            if item not in choices:
                return f"String must be one of: {', '.join(choices)}"
        return None

    return check


def non_empty(value: Any) -> str | None:
    """Validator: a string or list value, if given, is not empty."""
    if value is not None and len(value) == 0:
        return "Value must not be empty"
    return None


def parse_typed(type_: ConfigType, raw: str) -> Any:
    """Parse ``raw`` as ``type_``; raise ``ValueError`` with Kafka's reason text."""
    text = raw.strip()
    if type_ is ConfigType.BOOLEAN:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError("Expected value to be either true or false")
    if type_ in (ConfigType.SHORT, ConfigType.INT, ConfigType.LONG):
        lo, hi = _RANGES[type_.name]
        if not _INTEGER.fullmatch(text) or not lo <= int(text) <= hi:
            raise ValueError(f"Not a number of type {type_.name}")
        return int(text)
    if type_ is ConfigType.DOUBLE:
        try:
            return float(text)
        except ValueError:
            raise ValueError("Not a number of type DOUBLE") from None
    if type_ is ConfigType.LIST:
        return [] if not text else _LIST_SPLIT.split(text)
    return text


def render_typed(type_: ConfigType, value: Any) -> str | None:
    """Render a parsed value as the string DescribeConfigs reports (None stays None)."""
    if value is None:
        return None
    if type_ is ConfigType.BOOLEAN:
        return "true" if value else "false"
    if type_ is ConfigType.LIST:
        return ",".join(str(v) for v in value)
    if type_ is ConfigType.DOUBLE:
        return java_double(float(value))
    return str(value)


def java_double(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it (how Kafka renders DOUBLE configs).

    Plain decimals from 10^-3 up to 10^7 (``0.5``, ``100.0``), otherwise ``d.dddE<exp>``
    (``1.7976931348623157E308``, ``1.0E-4``); the digits are the shortest that round-trip.
    """
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if repr(value).startswith("-") else ""
    if value == 0:
        return sign + "0.0"
    exact = Decimal(repr(abs(value)))  # the shortest digits that round-trip
    if 1e-3 <= abs(value) < 1e7:
        text = format(exact, "f")
        return sign + (text if "." in text else text + ".0")
    _, digits, exponent = exact.normalize().as_tuple()
    assert isinstance(exponent, int)
    shown = "".join(map(str, digits))
    return f"{sign}{shown[0]}.{shown[1:] or '0'}E{len(shown) - 1 + exponent}"


@dataclass(frozen=True)
class ConfigDef:
    """One config key: its type, default (parsed), doc line, validation and update mode."""

    name: str
    type: ConfigType
    default: Any
    doc: str
    validators: Sequence[Validator] = ()
    update_mode: UpdateMode = UpdateMode.READ_ONLY
    sensitive: bool = False

    @property
    def read_only(self) -> bool:
        """True when the key cannot be changed at runtime."""
        return self.update_mode is UpdateMode.READ_ONLY

    def parse(self, raw: str, origin: str | None = None) -> Any:
        """Parse and validate a raw string; raise :class:`ConfigError` naming the key."""
        try:
            value = parse_typed(self.type, raw)
        except ValueError as exc:
            raise self._error(raw, str(exc), origin) from None
        self.validate(value, raw, origin)
        return value

    def validate(self, value: Any, raw: str | None = None, origin: str | None = None) -> None:
        """Run the validators on a parsed value; raise :class:`ConfigError` on failure."""
        for check in self.validators:
            reason = check(value)
            if reason is not None:
                shown = raw if raw is not None else self.render(value)
                raise self._error(shown, reason, origin)

    def render(self, value: Any) -> str | None:
        """Render a parsed value of this key as a string."""
        return render_typed(self.type, value)

    @property
    def default_str(self) -> str | None:
        """The default rendered as a string, or None when there is no default."""
        return self.render(self.default)

    def _error(self, raw: str | None, reason: str, origin: str | None) -> ConfigError:
        where = f" (from {origin})" if origin else ""
        shown = "null" if raw is None else raw.strip()
        return ConfigError(f"Invalid value {shown} for configuration {self.name}: {reason}{where}", self.name)
