"""Version ranges as the schemas write them: ``"0+"``, ``"3-7"``, ``"5"``, ``"none"``."""

from __future__ import annotations

from typing import NamedTuple

_MAX = 0x7FFF


class VersionRange(NamedTuple):
    """An inclusive range of versions; empty when ``low > high``."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str | None) -> VersionRange:
        if text is None or text == "none":
            return cls(1, 0)
        text = str(text)
        if text.endswith("+"):
            return cls(int(text[:-1]), _MAX)
        if "-" in text:
            lo, hi = text.split("-")
            return cls(int(lo), int(hi))
        return cls(int(text), int(text))

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.low <= version <= self.high

    @property
    def empty(self) -> bool:
        return self.low > self.high

    def __str__(self) -> str:
        if self.empty:
            return "none"
        if self.high == _MAX:
            return f"{self.low}+"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
