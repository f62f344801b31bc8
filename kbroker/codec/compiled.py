"""Compiled decoders and encoders: Python source generated from the schemas, ``exec``'d once.

The ``construct`` structs of :mod:`kbroker.codec.structs` walk a tree of objects for every
field of every message; here each (message, version) becomes one decode function and one
encode function per struct, straight-line code over ``struct.Struct`` objects (runs of
fixed-width fields read and written by one call). The structs stay the reference: the
functions generated here give the same values, the same bytes and the same errors
(truncated vs invalid) on every input, which the differential tests check.

Decoders take ``(buf, pos, end)`` (``buf`` is ``bytes``) and return ``(value, pos)``; they raise
:class:`Truncated` when the data ends early and :class:`Invalid` for impossible values.
Encoders take ``(value, append)`` and append the pieces of the encoding: a piece holding a
bytes value is that very object (record data is never copied here), and every piece that
may be large (bytes, string data, a tagged field) is a piece of its own, as the reference
writes them, so :func:`kbroker.codec.frames` cuts a response into the same buffers.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from construct import Container

from kbroker.codec.primitives import ZERO_UUID
from kbroker.codec.schema import FieldSpec, MessageSpec
from kbroker.codec.structs import default_value
from kbroker.codec.versions import VersionRange
from kbroker.records.varint import encode_uvarint

#: The longest string Kafka reads or writes (as :mod:`kbroker.codec.primitives`).
MAX_STRING = 0x7FFF
_MASK32 = 0xFFFFFFFF
#: struct format characters of the fixed-width types.
_FMT = {"int8": "b", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q",
        "float64": "d", "bool": "?"}
_SIZE = {c: struct.calcsize(">" + c) for c in _FMT.values()}
_ONE_BYTE = tuple(bytes((i,)) for i in range(128))
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_NONE = VersionRange(1, 0)
#: Arrays of fixed-width elements shorter than this use a precompiled struct per length.
_SMALL_ARRAY = 64
_ARRAYS = {c: tuple(struct.Struct(f">{n}{c}") for n in range(_SMALL_ARRAY)) for c in _FMT.values()}

Decoder = Callable[[bytes, int, int], tuple[Any, int]]
Encoder = Callable[[Any, Callable[[Any], Any]], None]


class Truncated(Exception):
    """The data ended before the value did (the reference's stream errors)."""


class Invalid(Exception):
    """An impossible value: bad length, bad UTF-8, over-long varint, tags out of order."""


def read_uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned varint starting at ``pos``: at most 5 bytes, as Kafka's readUnsignedVarint,
    wrapped to 32 bits (generated code reads one-byte varints inline and calls this for longer ones)."""
    result = 0
    shift = 0
    for _ in range(5):
        if pos >= end:
            raise Truncated("varint ended early")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK32, pos
        shift += 7
    raise Invalid("varint longer than 5 bytes")


def uvarint(value: int) -> bytes:
    """An unsigned varint, refusing values outside 32 bits (the reference's write_uvarint)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if not 0 <= value <= _MASK32:
        raise ValueError(f"unsigned varint cannot hold {value}")
    return encode_uvarint(value)


def read_string(buf: bytes, pos: int, end: int, n: int, nullable: bool) -> tuple[str | None, int]:
    """The string of declared length ``n`` at ``pos`` (``n`` already read)."""
    if n < 0:
        if n == -1 and nullable:
            return None, pos
        raise Invalid(f"invalid string length {n}")
    if n > MAX_STRING:
        raise Invalid(f"invalid string length {n}")
    e = pos + n
    if e > end:
        raise Truncated("string ended early")
    try:
        return buf[pos:e].decode("utf-8"), e
    except UnicodeDecodeError as err:
        raise Invalid(f"string is not UTF-8: {err}") from None


def read_bytes(buf: bytes, pos: int, end: int, n: int, nullable: bool) -> tuple[bytes | None, int]:
    """The bytes of declared length ``n`` at ``pos`` (``n`` already read)."""
    if n < 0:
        if n == -1 and nullable:
            return None, pos
        raise Invalid(f"invalid bytes length {n}")
    e = pos + n
    if e > end:
        raise Truncated("bytes ended early")
    return buf[pos:e], e


def array_count(n: int, nullable: bool, pos: int, end: int) -> int:
    """Check an array's declared count ``n``: -1 for a null array, else a count that fits."""
    if n < 0:
        if n == -1 and nullable:
            return -1
        raise Invalid(f"invalid array length {n}")
    # Every element takes at least one byte: a huge count in a short frame is an error,
    # not an allocation.
    if n > end - pos:
        raise Invalid(f"array of {n} elements in {end - pos} bytes")
    return n


def cut_string(data: bytes, truncate: bool) -> bytes:
    """A string's UTF-8 over the limit: cut at a character boundary (``truncate``: messages
    for people) or refused."""
    if not truncate:
        raise ValueError("string longer than 32767 bytes")
    return data[:MAX_STRING].decode("utf-8", "ignore").encode("utf-8")


def make_uuid(value: int) -> uuid.UUID:
    """A :class:`uuid.UUID` of a 128-bit int, in the state ``UUID(bytes=...)`` leaves it,
    without that constructor's argument checks (the int comes from 16 bytes)."""
    u = _new_uuid(uuid.UUID)
    _set(u, "int", value)
    _set(u, "is_safe", uuid.SafeUUID.unknown)
    return u


_new_uuid = object.__new__
_set = object.__setattr__


def encode_uuid(value: Any) -> bytes:
    """The 16 bytes of a UUID given as :class:`uuid.UUID`, its text or a false value (zero)."""
    if not isinstance(value, uuid.UUID):
        value = uuid.UUID(str(value)) if value else ZERO_UUID
    return value.bytes


@dataclass
class Codec:
    """The compiled decoder and encoder of one message at one version."""

    spec: MessageSpec
    version: int
    decode: Decoder
    encode: Encoder
    source: str  # the generated Python, for reading and debugging


# ---------------------------------------------------------------- code generation


class _Gen:
    """Generates the source of one message at one version: a decode and an encode function
    per struct (``d0``/``e0`` for the message itself)."""

    def __init__(self, version: int, flexible: bool) -> None:
        self.version = version
        self.flexible = flexible
        self.ns: dict[str, Any] = {
            "Container": Container, "Truncated": Truncated, "Invalid": Invalid,
            "read_uvarint": read_uvarint, "uvarint": uvarint, "read_string": read_string,
            "read_bytes": read_bytes, "array_count": array_count, "cut_string": cut_string,
            "make_uuid": make_uuid, "int_from_bytes": int.from_bytes,
            "encode_uuid": encode_uuid, "ONE": _ONE_BYTE, "I16": _I16, "I32": _I32,
            "Struct": struct.Struct,
        }
        self.lines: list[str] = []
        self.count = 0
        self.consts: dict[tuple[str, Any], str] = {}

    def const(self, value: Any, hint: str = "K") -> str:
        """A name in the namespace bound to ``value`` (shared, as the reference shares its defaults)."""
        name = f"{hint}{len(self.ns)}"
        self.ns[name] = value
        return name

    def struct_const(self, fmt: str) -> str:
        """The name of a precompiled big-endian ``struct.Struct`` of ``fmt``."""
        key = ("S", fmt)
        name = self.consts.get(key)
        if name is None:
            name = self.const(struct.Struct(">" + fmt), "S")
            self.consts[key] = name
        return name

    def array_structs(self, c: str) -> str:
        """The name of a tuple of precompiled structs of 0, 1, 2... elements of format ``c``."""
        key = ("A", c)
        name = self.consts.get(key)
        if name is None:
            name = self.const(_ARRAYS[c], "A")
            self.consts[key] = name
        return name

    def tmp(self) -> str:
        """A fresh local variable name."""
        self.count += 1
        return f"t{self.count}"

    # -------------------------------------------------------- layout of a struct

    def split(self, fields: tuple[FieldSpec, ...]) -> tuple[list[tuple[FieldSpec, Any]], list[tuple[FieldSpec, Any]]]:
        """The plain fields and (sorted by tag) the tagged fields present at this version,
        each with its default."""
        v = self.version
        plain: list[tuple[FieldSpec, Any]] = []
        tagged: list[tuple[int, FieldSpec, Any]] = []
        for f in fields:
            if v not in f.versions:
                continue
            d = default_value(f, v)
            if self.flexible and v in f.tagged and f.tag is not None:
                tagged.append((f.tag, f, d))
            else:
                plain.append((f, d))
        tagged.sort(key=lambda t: (t[0], t[1].attr))
        return plain, [(f, d) for _, f, d in tagged]

    def compact(self, f: FieldSpec) -> bool:
        """Whether ``f`` uses compact (uvarint) lengths: the message's flexibility, unless the
        field says otherwise (a header's client id is never compact)."""
        return self.flexible if f.flexible is None else self.version in f.flexible

    def fixed(self, f: FieldSpec) -> str | None:
        """The struct format character of a fixed-width field, else None."""
        if f.is_array or f.is_struct:
            return None
        return _FMT.get(f.type)

    def prefix(self, f: FieldSpec) -> str | None:
        """The format character of a non-compact length prefix (string, bytes, array)."""
        if self.fixed(f) is not None or self.compact(f):
            return None
        if f.is_array or f.type in ("bytes", "records"):
            return "i"
        if f.type == "string":
            return "h"
        return None

    # -------------------------------------------------------- decoders

    def decoder(self, fields: tuple[FieldSpec, ...]) -> str:
        """Emit the decode function of a struct; return its name."""
        name = f"d{self.count}"
        self.count += 1
        plain, tagged = self.split(fields)
        body: list[str] = []
        out: list[tuple[str, str]] = []  # (attr, local)
        count: str | None = None
        i = 0
        while i < len(plain):
            # A run of fixed-width fields, with the length prefix of the next field if any.
            fmt = ""
            names: list[str] = []
            j = i
            while j < len(plain) and (c := self.fixed(plain[j][0])) is not None:
                fmt += c
                local = self.tmp()
                names.append(local)
                out.append((plain[j][0].attr, local))
                j += 1
            pre = self.prefix(plain[j][0]) if j < len(plain) else None
            n_local = None
            if pre is not None:
                fmt += pre
                n_local = self.tmp()
                names.append(n_local)
            elif j == len(plain) and self.flexible:
                # The last run also reads the first byte of the tagged-field count.
                fmt += "B"
                count = self.tmp()
                names.append(count)
            if fmt:
                size = struct.calcsize(">" + fmt)
                s = self.struct_const(fmt)
                body.append(f"nxt = pos + {size}")
                body.append("if nxt > end: raise Truncated('frame ended early')")
                body.append(f"{', '.join(names)}, = {s}.unpack_from(buf, pos)")
                body.append("pos = nxt")
            if j < len(plain):
                f = plain[j][0]
                local = self.tmp()
                out.append((f.attr, local))
                body.extend(self.decode_field(f, local, "end", n_local))
                j += 1
            i = j
        if self.flexible:
            body.extend(self.decode_tagged(tagged, out, count))
        items = ", ".join(f"{attr}={local}" for attr, local in out)
        lines = [f"def {name}(buf, pos, end):", *("    " + b for b in body),
                 f"    return Container({items}), pos", ""]
        self.lines.extend(lines)
        return name

    def read_len(self, f: FieldSpec, n: str, end: str, known: str | None) -> list[str]:
        """Lines that put the field's declared length (or count) into ``n``: from the run
        just read, or a uvarint (compact, minus one)."""
        if known is not None:
            return [f"{n} = {known}"]
        if self.compact(f):
            return [f"if pos >= {end}: raise Truncated('frame ended early')",
                    f"{n} = buf[pos]",
                    f"if {n} < 0x80: pos += 1",
                    f"else: {n}, pos = read_uvarint(buf, pos, {end})",
                    f"{n} -= 1"]
        c = self.prefix(f)
        assert c is not None
        size = _SIZE[c]
        return [f"if pos + {size} > {end}: raise Truncated('frame ended early')",
                f"{n}, = {'I16' if c == 'h' else 'I32'}.unpack_from(buf, pos)",
                f"pos += {size}"]

    def decode_field(self, f: FieldSpec, target: str, end: str, known: str | None = None) -> list[str]:
        """Lines that decode field ``f`` at ``pos`` into ``target``."""
        nullable = self.version in f.nullable
        if f.is_array:
            n = self.tmp()
            lines = self.read_len(f, n, end, known)
            lines.append(f"if {n} < 0 or {n} > {end} - pos: {n} = array_count({n}, {nullable}, pos, {end})")
            lines.append(f"if {n} < 0: {target} = None")
            lines.append("else:")
            if f.is_struct:
                sub = self.decoder(f.fields or ())
                x = self.tmp()
                lines.append(f"    {target} = []")
                lines.append(f"    for _ in range({n}):")
                lines.append(f"        {x}, pos = {sub}(buf, pos, {end})")
                lines.append(f"        {target}.append({x})")
                return lines
            c = _FMT.get(f.element_type)
            if c is not None:
                size = _SIZE[c]
                lines.append(f"    nxt = pos + {size} * {n}")
                lines.append(f"    if nxt > {end}: raise Truncated('frame ended early')")
                arr = self.array_structs(c)
                lines.append(f"    {target} = list(({arr}[{n}] if {n} < {_SMALL_ARRAY} else Struct('>%d{c}' % {n}))"
                             ".unpack_from(buf, pos))")
                lines.append("    pos = nxt")
                return lines
            elem = _element(f)
            x = self.tmp()
            lines.append(f"    {target} = []")
            lines.append(f"    for _ in range({n}):")
            lines.extend("        " + ln for ln in self.decode_field(elem, x, end))
            lines.append(f"        {target}.append({x})")
            return lines
        if f.is_struct:
            sub = self.decoder(f.fields or ())
            if not nullable:
                return [f"{target}, pos = {sub}(buf, pos, {end})"]
            return [f"if pos >= {end}: raise Truncated('frame ended early')",
                    f"if buf[pos] == 0xFF: {target} = None; pos += 1",
                    f"else: {target}, pos = {sub}(buf, pos + 1, {end})"]
        t = f.type
        c = _FMT.get(t)
        if c is not None:
            size = _SIZE[c]
            return [f"nxt = pos + {size}",
                    f"if nxt > {end}: raise Truncated('frame ended early')",
                    f"{target}, = {self.struct_const(c)}.unpack_from(buf, pos)",
                    "pos = nxt"]
        if t == "uuid":
            return ["nxt = pos + 16",
                    f"if nxt > {end}: raise Truncated('frame ended early')",
                    f"{target} = make_uuid(int_from_bytes(buf[pos:nxt], 'big'))",
                    "pos = nxt"]
        if t in ("string", "bytes", "records"):
            n = self.tmp()
            lines = self.read_len(f, n, end, known)
            if t == "string":
                lines += [f"nxt = pos + {n}",
                          f"if {n} < 0 or {n} > {MAX_STRING} or nxt > {end}:",
                          f"    {target}, pos = read_string(buf, pos, {end}, {n}, {nullable})",
                          "else:",
                          f"    try: {target} = buf[pos:nxt].decode('utf-8')",
                          "    except UnicodeDecodeError as err: raise Invalid(f'string is not UTF-8: {err}') from None",
                          "    pos = nxt"]
            else:
                lines += [f"nxt = pos + {n}",
                          f"if {n} < 0 or nxt > {end}: {target}, pos = read_bytes(buf, pos, {end}, {n}, {nullable})",
                          f"else: {target} = buf[pos:nxt]; pos = nxt"]
            return lines
        raise ValueError(f"unknown field type {t!r}")

    def decode_tagged(self, tagged: list[tuple[FieldSpec, Any]], out: list[tuple[str, str]],
                      count: str | None) -> list[str]:
        """Lines that read a tagged-field section: known tags into their locals (defaults
        when absent), unknown ones skipped; tags in increasing order, each field's data
        used exactly. ``count``: a local holding the section's first byte, already read."""
        lines: list[str] = []
        locals_: list[tuple[FieldSpec, str]] = []
        for f, d in tagged:
            local = self.tmp()
            locals_.append((f, local))
            out.append((f.attr, local))
            lines.append(f"{local} = []" if f.is_array and d == [] else f"{local} = {self.const(d, 'D')}")
        if count is not None:
            k = count
            lines.append(f"if {k} >= 0x80: {k}, pos = read_uvarint(buf, pos - 1, end)")
        else:
            k = self.tmp()
            lines += ["if pos >= end: raise Truncated('frame ended early')",
                      f"{k} = buf[pos]",
                      f"if {k} < 0x80: pos += 1",
                      f"else: {k}, pos = read_uvarint(buf, pos, end)"]
        lines.append(f"if {k}:")
        body = ["last = -1",
                f"for _ in range({k}):",
                "    if pos >= end: raise Truncated('frame ended early')",
                "    tag = buf[pos]",
                "    if tag < 0x80: pos += 1",
                "    else: tag, pos = read_uvarint(buf, pos, end)",
                "    if pos >= end: raise Truncated('frame ended early')",
                "    size = buf[pos]",
                "    if size < 0x80: pos += 1",
                "    else: size, pos = read_uvarint(buf, pos, end)",
                "    tend = pos + size",
                "    if tend > end: raise Truncated('frame ended early')",
                "    if tag <= last: raise Invalid('tagged fields out of order')",
                "    last = tag"]
        kw = "if"
        for f, local in locals_:
            body.append(f"    {kw} tag == {f.tag}:")
            body.extend("        " + ln for ln in self.decode_field(f, local, "tend"))
            body.append(f"        if pos != tend: raise Invalid('tagged field {f.tag} has trailing bytes')")
            kw = "elif"
        body.append("    pos = tend")
        lines.extend("    " + b for b in body)
        return lines

    # -------------------------------------------------------- encoders

    def encoder(self, fields: tuple[FieldSpec, ...]) -> str:
        """Emit the encode function of a struct; return its name."""
        name = f"e{self.count}"
        self.count += 1
        plain, tagged = self.split(fields)
        body: list[str] = ["g = o.get"]
        padded = False
        i = 0
        while i < len(plain):
            fmt = ""
            vals: list[str] = []
            j = i
            while j < len(plain) and (c := self.fixed(plain[j][0])) is not None:
                f, d = plain[j]
                fmt += c
                vals.append(f"g({f.attr!r}, {self.default_expr(d)})")
                j += 1
            if fmt and j == len(plain) and self.flexible and not tagged:
                fmt += "x"  # a zero byte: the empty tagged-field section
                padded = True
            if fmt:
                body.append(f"ap({self.struct_const(fmt)}.pack({', '.join(vals)}))")
            if j < len(plain):
                f, d = plain[j]
                v = self.tmp()
                body.append(f"{v} = g({f.attr!r}, {self.default_expr(d)})")
                body.extend(self.encode_field(f, v, "ap"))
                j += 1
            i = j
        if self.flexible and not padded:
            body.extend(self.encode_tagged(tagged))
        self.lines.extend([f"def {name}(o, ap):", *("    " + b for b in body), ""])
        return name

    def default_expr(self, d: Any) -> str:
        """A default as a literal where one is exact, else a shared constant."""
        if d is None or type(d) in (bool, int, str):
            return repr(d)
        return self.const(d, "D")

    def encode_field(self, f: FieldSpec, v: str, ap: str) -> list[str]:
        """Lines that encode the value in local ``v`` of field ``f`` through ``ap``."""
        nullable = self.version in f.nullable
        compact = self.compact(f)
        null = "b'\\x00'" if compact else ("b'\\xff\\xff'" if f.type == "string" and not f.is_array
                                           else "b'\\xff\\xff\\xff\\xff'")
        lines: list[str] = []
        if f.is_array or f.type in ("bytes", "records") or (f.is_struct and nullable):
            if f.is_struct and not f.is_array:
                null = "b'\\xff'"
            lines.append(f"if {v} is None:")
            if nullable:
                lines.append(f"    {ap}({null})")
            else:
                lines.append(f"    raise ValueError('null given for non-nullable {f.attr}')")
            lines.append("else:")
            inner = self.encode_present(f, v, ap, compact)
            lines.extend("    " + ln for ln in inner)
            return lines
        return self.encode_present(f, v, ap, compact)

    def encode_present(self, f: FieldSpec, v: str, ap: str, compact: bool) -> list[str]:
        """Lines for a value known not to be None where a null is handled by the caller."""
        if f.is_array:
            lines = self.encode_len(v, ap, compact, "I32")
            if f.is_struct:
                sub = self.encoder(f.fields or ())
                x = self.tmp()
                lines.append(f"for {x} in {v}: {sub}({x}, {ap})")
                return lines
            c = _FMT.get(f.element_type)
            if c is not None:
                arr = self.array_structs(c)
                n = self.tmp()
                lines.append(f"{n} = len({v})")
                lines.append(f"{ap}(({arr}[{n}] if {n} < {_SMALL_ARRAY} else Struct('>%d{c}' % {n})).pack(*{v}))")
                return lines
            elem = _element(f)
            x = self.tmp()
            lines.append(f"for {x} in {v}:")
            lines.extend("    " + ln for ln in self.encode_field(elem, x, ap))
            return lines
        if f.is_struct:
            sub = self.encoder(f.fields or ())
            if self.version in f.nullable:
                return [f"{ap}(b'\\x01')", f"{sub}({v}, {ap})"]
            return [f"{sub}({v}, {ap})"]
        t = f.type
        c = _FMT.get(t)
        if c is not None:
            return [f"{ap}({self.struct_const(c)}.pack({v}))"]
        if t == "uuid":
            return [f"{ap}(encode_uuid({v}))"]
        if t == "string":
            truncate = f.attr.endswith("error_message")
            if self.version in f.nullable:
                null = "b'\\x00'" if compact else "b'\\xff\\xff'"
                lines = [f"if {v} is None: {ap}({null})", "else:"]
            else:
                lines = [f"if {v} is None: raise ValueError('null given for a non-nullable string')", "else:"]
            d = self.tmp()
            inner = [f"{d} = {v}.encode('utf-8')",
                     f"if len({d}) > {MAX_STRING}: {d} = cut_string({d}, {truncate})",
                     *self.encode_len(d, ap, compact, "I16"),
                     f"{ap}({d})"]
            return lines + ["    " + ln for ln in inner]
        if t in ("bytes", "records"):
            return [*self.encode_len(v, ap, compact, "I32"), f"{ap}({v})"]
        raise ValueError(f"unknown field type {t!r}")

    def encode_len(self, v: str, ap: str, compact: bool, fixed: str) -> list[str]:
        """Lines that append the length of ``v``: a uvarint of length + 1, or int16/int32."""
        if not compact:
            return [f"{ap}({fixed}.pack(len({v})))"]
        n = self.tmp()
        return [f"{n} = len({v}) + 1", f"{ap}(ONE[{n}] if {n} < 128 else uvarint({n}))"]

    def encode_tagged(self, tagged: list[tuple[FieldSpec, Any]]) -> list[str]:
        """Lines that write the tagged-field section: only fields that differ from their
        default, each as one piece (tag, size, data)."""
        if not tagged:
            return ["ap(b'\\x00')"]
        lines = ["tg = None"]
        for f, d in tagged:
            v = self.tmp()
            dn = self.const(d, "D")
            lines.append(f"{v} = g({f.attr!r}, {dn})")
            if d == d:
                # ``is`` first: the default itself (a key left out) needs no comparison, and
                # a default that equals itself is what the reference's ``value == default`` finds.
                lines.append(f"if {v} is not {dn} and not ({v} == {dn}):")
            else:
                lines.append(f"if not ({v} == {dn}):")
            sub = self.tmp()
            inner = [f"{sub} = []"]
            inner.extend(self.encode_field(f, v, f"{sub}.append"))
            inner.append(f"{sub} = b''.join({sub})")
            inner.append(f"{sub} = {encode_uvarint(f.tag or 0)!r} + uvarint(len({sub})) + {sub}")
            inner.append(f"if tg is None: tg = [{sub}]")
            inner.append(f"else: tg.append({sub})")
            lines.extend("    " + ln for ln in inner)
        lines += ["if tg is None: ap(b'\\x00')",
                  "else:",
                  "    ap(uvarint(len(tg)))",
                  "    for x in tg: ap(x)"]
        return lines


def _element(f: FieldSpec) -> FieldSpec:
    """The element of a scalar array: never null, never cut (the reference's scalar_construct)."""
    return FieldSpec(f.name, "element", f.element_type, f.versions, _NONE, _NONE, None, None, f.flexible, None)


def compile_message(spec: MessageSpec, version: int) -> Codec:
    """Generate, ``exec`` and return the codec of ``spec`` at ``version`` (not cached)."""
    flexible = version in spec.flexible
    gen = _Gen(version, flexible)
    dec = gen.decoder(spec.fields)
    enc = gen.encoder(spec.fields)
    source = "\n".join(gen.lines)
    code = compile(source, f"<kbroker codec {spec.name} v{version}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - our own generated source, from our own schemas
    return Codec(spec, version, gen.ns[dec], gen.ns[enc], source)


_cache: dict[tuple[str, int, bool], Codec] = {}
_other: dict[tuple[int, int], Codec] = {}


def codec_for(spec: MessageSpec, version: int) -> Codec:
    """The compiled codec of ``spec`` at ``version``, built on first use.

    Cached by (name, version, flexible) and checked by identity, so no spec tree is hashed
    per call; a different spec of the same name (Kafka's schema without kbroker's
    extensions) is compiled and cached apart, by its identity.
    """
    key = (spec.name, version, version in spec.flexible)
    c = _cache.get(key)
    if c is not None and c.spec is spec:
        return c
    if c is None:
        c = _cache[key] = compile_message(spec, version)
        return c
    other = _other.get((id(spec), version))
    if other is None or other.spec is not spec:
        other = _other[(id(spec), version)] = compile_message(spec, version)
    return other
