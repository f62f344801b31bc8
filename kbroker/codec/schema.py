"""Load the message schemas in ``protocol/messages`` into typed specs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from kbroker.codec.versions import VersionRange

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "protocol"
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """``ThrottleTimeMs`` -> ``throttle_time_ms``: the attribute name of a field."""
    return _SNAKE.sub("_", name).lower()


@dataclass(frozen=True)
class FieldSpec:
    """One field of a message or nested struct."""

    name: str
    attr: str
    type: str
    versions: VersionRange
    nullable: VersionRange
    tagged: VersionRange
    tag: int | None
    default: Any
    flexible: VersionRange | None
    fields: tuple[FieldSpec, ...] | None

    @property
    def is_array(self) -> bool:
        return self.type.startswith("[]")

    @property
    def element_type(self) -> str:
        return self.type[2:] if self.is_array else self.type

    @property
    def is_struct(self) -> bool:
        return self.fields is not None


@dataclass(frozen=True)
class MessageSpec:
    """A request, response, header or data message."""

    name: str
    type: str
    api_key: int | None
    valid: VersionRange
    flexible: VersionRange
    fields: tuple[FieldSpec, ...]


def _field(d: dict[str, Any]) -> FieldSpec:
    sub = d.get("fields")
    return FieldSpec(
        name=d["name"],
        attr=snake(d["name"]),
        type=d["type"],
        versions=VersionRange.parse(d.get("versions")),
        nullable=VersionRange.parse(d.get("nullable_versions")),
        tagged=VersionRange.parse(d.get("tagged_versions")),
        tag=d.get("tag"),
        default=d.get("default"),
        flexible=VersionRange.parse(d["flexible_versions"]) if "flexible_versions" in d else None,
        fields=tuple(_field(f) for f in sub) if sub is not None else None,
    )


def parse_message(d: dict[str, Any]) -> MessageSpec:
    """Build a :class:`MessageSpec` from one schema file's JSON."""
    return MessageSpec(
        name=d["name"],
        type=d["type"],
        api_key=d.get("api_key"),
        valid=VersionRange.parse(d.get("valid_versions")),
        flexible=VersionRange.parse(d.get("flexible_versions")),
        fields=tuple(_field(f) for f in d["fields"]),
    )


@cache
def load_message(name: str, *, extensions: bool = True) -> MessageSpec:
    """Load ``protocol/messages/<name>.json``, with kbroker's own tagged fields from
    ``protocol/extensions.json`` unless ``extensions`` is False (Kafka's schema alone)."""
    d = json.loads((SCHEMA_DIR / "messages" / f"{name}.json").read_text())
    if extensions:
        for ext in kbroker_extensions().get(name, ()):
            _struct_fields(d, ext["path"]).append(ext["field"])
    return parse_message(d)


#: kbroker-only fields are tagged fields with a tag at least this high, far above any tag Kafka
#: numbers from 0 upwards, so a Kafka client skips them (KIP-482) and no Kafka field collides.
KBROKER_TAG_FLOOR = 10000


@cache
def kbroker_extensions() -> dict[str, list[dict[str, Any]]]:
    """``protocol/extensions.json``: message name -> ``[{"path": "A.B", "field": {...}}]``, the
    tagged fields kbroker adds to Kafka's schemas (``path``: the struct, by field names)."""
    path = SCHEMA_DIR / "extensions.json"
    if not path.exists():
        return {}
    out: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())["messages"]
    return out


def _struct_fields(d: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The ``fields`` list of the struct at ``path`` (dotted field names; "" is the message)."""
    fields: list[dict[str, Any]] = d["fields"]
    for name in filter(None, path.split(".")):
        found = next((f for f in fields if f["name"] == name and "fields" in f), None)
        if found is None:
            raise ValueError(f"{d['name']}: no struct {path!r} for a kbroker extension")
        fields = found["fields"]
    return fields


@cache
def all_messages() -> dict[str, MessageSpec]:
    """Every schema, by name."""
    return {p.stem: load_message(p.stem) for p in sorted((SCHEMA_DIR / "messages").glob("*.json"))}
