"""Build ``construct`` parsers/builders for one message at one version.

A message at a version becomes a :class:`KStruct`: its fields present in that version,
each mapped to a primitive from :mod:`kbroker.codec.primitives`, with compact types
and a tagged-field section when the version is flexible. Decoded values are
``construct.Container`` objects keyed by snake_case names; encoding takes any
mapping and fills fields it lacks with the schema's default.
"""

from __future__ import annotations

import io
import uuid
from functools import cache
from typing import Any

from construct import Construct, Container, stream_read, stream_write

from kbroker.codec.primitives import (
    FIXED,
    ZERO_UUID,
    KArray,
    KBytes,
    KString,
    Uuid,
    ValueError_,
    read_uvarint,
    uvarint_bytes,
    write_uvarint,
)
from kbroker.codec.schema import FieldSpec, MessageSpec


def default_value(f: FieldSpec, version: int) -> Any:
    """The value a field takes when a message omits it."""
    d = f.default
    if d == "null" and version in f.nullable:
        return None
    if f.is_array:
        return []
    if f.is_struct:
        return Container((g.attr, default_value(g, version)) for g in f.fields or () if version in g.versions)
    t = f.type
    if t in ("int8", "int16", "int32", "int64", "uint16", "uint32"):
        if d is None or d == "":
            return 0
        s = str(d)
        return int(s, 16) if s.lower().startswith("0x") else int(s)
    if t == "float64":
        return float(d) if d is not None else 0.0
    if t == "bool":
        return str(d).lower() == "true" if d is not None else False
    if t == "string":
        return "" if d is None or d == "null" else str(d)
    if t == "uuid":
        return ZERO_UUID if not d else uuid.UUID(str(d))
    if t in ("bytes", "records"):
        return None if version in f.nullable else b""
    raise ValueError(f"no default for type {t}")


class TaggedFields(Construct):
    """The tagged-field section of a flexible struct: known tags by name, unknown ones skipped."""

    def __init__(self, entries: list[tuple[int, str, Construct, Any]]) -> None:
        super().__init__()
        self.entries = sorted(entries)
        self.by_tag = {tag: (attr, con) for tag, attr, con, _ in self.entries}

    def _parse(self, stream: Any, context: Any, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        n = read_uvarint(stream, path)
        last = -1
        for _ in range(n):
            tag = read_uvarint(stream, path)
            size = read_uvarint(stream, path)
            data = stream_read(stream, size, path)
            if tag <= last:
                raise ValueError_("tagged fields out of order", path=path)
            last = tag
            known = self.by_tag.get(tag)
            if known is not None:
                sub = io.BytesIO(data)
                out[known[0]] = known[1]._parsereport(sub, context, path)
                if sub.tell() != size:
                    raise ValueError_(f"tagged field {tag} has trailing bytes", path=path)
        return out

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        chunks = []
        for tag, attr, con, default in self.entries:
            value = obj.get(attr, default)
            if value == default:
                continue  # Kafka writes a tagged field only when it differs from its default
            buf = io.BytesIO()
            con._build(value, buf, context, path)
            data = buf.getvalue()
            chunks.append(uvarint_bytes(tag) + uvarint_bytes(len(data)) + data)
        write_uvarint(len(chunks), stream, path)
        for c in chunks:
            stream_write(stream, c, len(c), path)
        return obj


class KStruct(Construct):
    """A struct: fields in order, then (flexible) the tagged-field section."""

    def __init__(self, fields: list[tuple[str, Construct, Any]], tagged: TaggedFields | None,
                 nullable: bool = False) -> None:
        super().__init__()
        self.fields = fields
        self.tagged = tagged
        self.nullable = nullable  # nullable structs carry an int8 presence marker (-1 null)

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if self.nullable and stream_read(stream, 1, path)[0] == 0xFF:
            return None
        obj = Container()
        for attr, con, _ in self.fields:
            obj[attr] = con._parsereport(stream, context, path)
        if self.tagged is not None:
            for attr, _tag_con, default in ((a, c, d) for _t, a, c, d in self.tagged.entries):
                obj[attr] = default
            obj.update(self.tagged._parse(stream, context, path))
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if self.nullable:
            if obj is None:
                stream_write(stream, b"\xff", 1, path)
                return obj
            stream_write(stream, b"\x01", 1, path)
        get = obj.get
        for attr, con, default in self.fields:
            value = get(attr, default)
            try:
                con._build(value, stream, context, path)
            except ValueError_:
                raise
            except Exception as e:
                raise ValueError_(f"field {attr}: {e}", path=path) from e
        if self.tagged is not None:
            self.tagged._build(obj, stream, context, path)
        return obj


def field_construct(f: FieldSpec, version: int, flexible: bool) -> Construct:
    """The construct for one field at one version of its message."""
    compact = flexible if f.flexible is None else version in f.flexible
    nullable = version in f.nullable
    if f.is_array:
        elem = f.element_type
        if f.is_struct:
            sub: Construct = build_struct(f.fields or (), version, flexible)
        else:
            sub = scalar_construct(elem, False, compact)
        return KArray(sub, nullable, compact)
    if f.is_struct:
        return build_struct(f.fields or (), version, flexible, nullable=nullable)
    if f.type == "string" and f.attr.endswith("error_message"):
        # Error messages may quote a client's own long name or value; cut, never fail the response.
        return KString(nullable, compact, truncate=True)
    return scalar_construct(f.type, nullable, compact)


def scalar_construct(t: str, nullable: bool, compact: bool) -> Construct:
    if t in FIXED:
        return FIXED[t]
    if t == "string":
        return KString(nullable, compact)
    if t in ("bytes", "records"):
        return KBytes(nullable, compact)
    if t == "uuid":
        return Uuid()
    raise ValueError(f"unknown field type {t!r}")


def build_struct(fields: tuple[FieldSpec, ...], version: int, flexible: bool, nullable: bool = False) -> KStruct:
    """A :class:`KStruct` for ``fields`` as they exist at ``version``."""
    plain: list[tuple[str, Construct, Any]] = []
    tagged: list[tuple[int, str, Construct, Any]] = []
    for f in fields:
        if version not in f.versions:
            continue
        con = field_construct(f, version, flexible)
        default = default_value(f, version)
        if flexible and version in f.tagged and f.tag is not None:
            tagged.append((f.tag, f.attr, con, default))
        else:
            plain.append((f.attr, con, default))
    return KStruct(plain, TaggedFields(tagged) if flexible else None, nullable)


@cache
def message_struct(spec: MessageSpec, version: int) -> KStruct:
    """The struct for a whole message at ``version`` (built once and cached)."""
    return build_struct(spec.fields, version, version in spec.flexible)
