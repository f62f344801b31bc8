"""Shared helpers for the codec tests: value generators and the kafka-python adapter.

Our value model: ``construct.Container`` (a dict) keyed by snake_case names, uuids as
:class:`uuid.UUID` (the zero uuid for "unset"), bytes as ``bytes``, every field of the
version present (tagged fields hold their default when unset).

kafka-python's model (``kafka.protocol``): ``DataContainer`` objects with slots named by
``re.sub('(?<!^)(?=[A-Z])', '_', name).lower()`` (a few fields renamed by ``json_patch``),
the zero uuid decoded as ``None``, ``*AuthorizedOperations`` patched to a ``bitfield`` type
holding a ``set`` of bit numbers (``None`` for ``-2**31``), and unset tagged struct fields
as ``None``. Fields are matched by position, which the specs share.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from construct import Container

from kbroker.codec import api_table
from kbroker.codec.schema import FieldSpec, MessageSpec
from kbroker.codec.structs import default_value

ZERO_UUID = uuid.UUID(int=0)
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
STRINGS = ["", "a", "topic-0", "ünïcødé ✓", "日本語のトピック", "emoji 😀🚀", "x" * 200, "nul\x00byte"]


def kp_resources() -> Path:
    import kafka.protocol.schemas as schemas

    return Path(schemas.__file__).parent / "resources"


@cache
def kp_message_classes() -> dict[str, Any]:
    """Every kafka-python ``ApiMessage`` class by message name (``MetadataRequest`` ...)."""
    import kafka.protocol as kp
    from kafka.protocol.api_message import ApiMessage

    for m in pkgutil.walk_packages(kp.__path__, "kafka.protocol."):
        if ".old" not in m.name and "generate_stubs" not in m.name:
            importlib.import_module(m.name)
    out: dict[str, Any] = {}
    todo = list(ApiMessage.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "_class_version", 0) is None and getattr(cls, "_json", None) is not None:
            out[cls.name] = cls
    return out


def api_versions_both() -> list[tuple[str, int, int]]:
    """``(api name, api key, version)`` for every version both codecs support."""
    kp = kp_message_classes()
    rows = []
    for key, api in api_table().items():
        req = kp.get(api.name + "Request")
        if req is None:
            continue
        hi = min(api.versions.high, req.max_version)
        rows.extend((api.name, key, v) for v in range(max(api.versions.low, 0), hi + 1))
    return rows


def all_api_versions() -> list[tuple[str, int, int]]:
    """``(api name, api key, version)`` for every version our codec supports."""
    return [(api.name, key, v) for key, api in api_table().items()
            for v in range(api.versions.low, api.versions.high + 1)]


# ---------------------------------------------------------------- plain values


def plain(x: Any) -> Any:
    """Containers to dicts, lists to lists, byte-likes to bytes: comparable with ``==``."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items() if not k.startswith("_")}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if isinstance(x, bytearray | memoryview):
        return bytes(x)
    return x


def is_tagged(f: FieldSpec, version: int, flexible: bool) -> bool:
    return flexible and version in f.tagged and f.tag is not None


# ---------------------------------------------------------------- deterministic generator


class Gen:
    """Deterministic values for a schema.

    ``mode``: ``"empty"`` (nulls where nullable, empty arrays, tagged unset),
    ``"full"`` (nothing null, two-element arrays, every tagged field set) or
    ``"random"`` (seeded mix of both).
    """

    def __init__(self, mode: str, seed: int = 0) -> None:
        self.mode = mode
        self.rnd = random.Random(seed)

    def _coin(self, p: float) -> bool:
        if self.mode == "empty":
            return True
        if self.mode == "full":
            return False
        return self.rnd.random() < p

    def message(self, spec: MessageSpec, version: int) -> dict[str, Any]:
        return self.fields(spec.fields, version, version in spec.flexible)

    def fields(self, fields: tuple[FieldSpec, ...], version: int, flexible: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            if version not in f.versions:
                continue
            if is_tagged(f, version, flexible):
                default = plain(default_value(f, version))
                if self._coin(0.5):
                    out[f.attr] = default
                    continue
                for _ in range(10):
                    v = self.value(f, version, flexible)
                    if v != default:
                        break
                out[f.attr] = v if v != default else default
            else:
                out[f.attr] = self.value(f, version, flexible)
        return out

    def value(self, f: FieldSpec, version: int, flexible: bool) -> Any:
        nullable = version in f.nullable
        if nullable and self._coin(0.3):
            return None
        if f.is_array:
            n = 0 if self.mode == "empty" else 2 if self.mode == "full" else self.rnd.choice([0, 1, 1, 2, 3])
            if f.is_struct:
                return [self.fields(f.fields or (), version, flexible) for _ in range(n)]
            return [self.scalar(f.element_type) for _ in range(n)]
        if f.is_struct:
            return self.fields(f.fields or (), version, flexible)
        return self.scalar(f.type)

    def scalar(self, t: str) -> Any:
        r = self.rnd
        if t in INT_RANGES:
            lo, hi = INT_RANGES[t]
            return r.choice([lo, hi, 0, -1 if lo < 0 else 1, r.randint(lo, hi), r.randint(0, min(hi, 1000))])
        if t == "float64":
            return r.choice([0.0, -1.5, 1e300, 123456.789, r.uniform(-1e9, 1e9)])
        if t == "bool":
            return True if self.mode == "full" else r.random() < 0.5
        if t == "string":
            if self.mode == "empty":
                return ""
            s = r.choice(STRINGS[1:] if self.mode == "full" else STRINGS)
            return s + "".join(chr(r.choice([r.randint(0x20, 0x7E), r.randint(0xA0, 0xD7FF),
                                             r.randint(0xE000, 0x10FFFF)])) for _ in range(r.randint(0, 4)))
        if t in ("bytes", "records"):
            if self.mode == "empty":
                return b""
            return r.randbytes(r.choice([1, 7, 64, 300]))
        if t == "uuid":
            if self.mode == "empty":
                return ZERO_UUID
            return uuid.UUID(int=r.getrandbits(128))
        raise AssertionError(f"unknown type {t}")


# ---------------------------------------------------------------- kafka-python adapter


def _kp_fields(kf: Any) -> tuple[Any, ...]:
    """The kafka-python sub-fields of a struct or struct-array field (or message struct)."""
    inner = kf.array_of if kf.is_struct_array() else kf
    return tuple(inner._fields)


def _kp_data_class(kf: Any) -> Any:
    return (kf.array_of if kf.is_struct_array() else kf).data_class


def _to_bitfield(v: int) -> set[int] | None:
    bits = {i for i in range(32) if (v & 0xFFFFFFFF) >> i & 1}
    return None if bits == {31} else bits


def _from_bitfield(bits: Any) -> int:
    if bits is None:
        bits = {31}
    u = 0
    for b in bits:
        u |= 1 << b
    return u - (1 << 32) if u & 0x80000000 else u


def to_kp_kwargs(x: dict[str, Any], fields: tuple[FieldSpec, ...], kfields: tuple[Any, ...],
                 version: int, flexible: bool) -> dict[str, Any]:
    """Our value -> keyword arguments for a kafka-python data class at ``version``."""
    assert len(fields) == len(kfields), (fields, kfields)
    out = {}
    for f, kf in zip(fields, kfields, strict=True):
        if version not in f.versions or f.attr not in x:
            continue
        v = x[f.attr]
        if is_tagged(f, version, flexible) and plain(v) == plain(default_value(f, version)):
            continue  # unset: kafka-python leaves the attribute at its own default
        out[kf.name] = _to_kp_value(v, f, kf, version, flexible)
    return out


def _to_kp_value(v: Any, f: FieldSpec, kf: Any, version: int, flexible: bool) -> Any:
    if v is None:
        return None
    if f.is_struct:
        cls = _kp_data_class(kf)
        sub = _kp_fields(kf)
        if f.is_array:
            return [cls(version=version, **to_kp_kwargs(e, f.fields or (), sub, version, flexible)) for e in v]
        return cls(version=version, **to_kp_kwargs(v, f.fields or (), sub, version, flexible))
    if kf.type_str == "bitfield":
        return _to_bitfield(v)
    return v


def to_kp(cls: Any, spec: MessageSpec, version: int, x: dict[str, Any]) -> Any:
    """A kafka-python message object holding our value ``x``."""
    flexible = version in spec.flexible
    return cls[version](**to_kp_kwargs(x, spec.fields, tuple(cls._struct._fields), version, flexible))


def from_kp(obj: Any, fields: tuple[FieldSpec, ...], kfields: tuple[Any, ...], version: int,
            flexible: bool) -> dict[str, Any]:
    """A kafka-python decoded object -> our (plain) value model."""
    out: dict[str, Any] = {}
    for f, kf in zip(fields, kfields, strict=True):
        if version not in f.versions:
            continue
        v = getattr(obj, kf.name)
        if f.is_struct:
            sub = _kp_fields(kf)
            if v is None:
                v = plain(default_value(f, version)) if is_tagged(f, version, flexible) else None
            elif f.is_array:
                v = [from_kp(e, f.fields or (), sub, version, flexible) for e in v]
            else:
                v = from_kp(v, f.fields or (), sub, version, flexible)
        elif kf.type_str == "bitfield":
            v = _from_bitfield(v)
        elif f.element_type == "uuid":
            v = [ZERO_UUID if e is None else e for e in v] if f.is_array and v is not None else (
                ZERO_UUID if v is None else v)
        out[f.attr] = plain(v)
    return out


def from_kp_message(obj: Any, spec: MessageSpec, version: int) -> dict[str, Any]:
    return from_kp(obj, spec.fields, tuple(type(obj)._struct._fields), version, version in spec.flexible)


def container(x: Any) -> Any:
    """Our plain value as nested ``Container``s (what handlers pass to the encoder)."""
    if isinstance(x, dict):
        return Container((k, container(v)) for k, v in x.items())
    if isinstance(x, list):
        return [container(v) for v in x]
    return x
