"""Seed requests: valid requests for every API and version the broker serves.

Values are generated from the codec's own schemas with sensible, field-aware choices
(topic names the broker knows, small partition numbers, real record batches, consumer
protocol subscriptions and assignments, real config names), then encoded by a walker
that records where every field sits in the frame (:class:`Span`), so mutations can aim
at one decoded field without re-encoding (and so reach values the encoder refuses).
"""

from __future__ import annotations

import io
import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from construct import Container

from kbroker.codec import api_table, decode_request, encode_request
from kbroker.codec.apis import Api
from kbroker.codec.schema import FieldSpec, load_message
from kbroker.codec.structs import build_struct, default_value, scalar_construct
from kbroker.records.varint import encode_uvarint
from tools.fuzz import payloads

CAPTURED = Path(__file__).with_name("captured.txt")
TOPICS = ("fuzz-0", "fuzz-1", "fuzz-2")
GROUPS = ("fuzz-g0", "fuzz-g1", "fuzz-g2")
_CTX = Container()


@dataclass(frozen=True)
class Span:
    """One encoded field of a seed frame: ``frame[start:end]`` (``start`` counts the size prefix).

    ``kind`` is the schema type (``int32``, ``string``, ``records``, ...) or ``array`` (the
    count only), ``nstruct`` (a nullable struct's marker) or ``tagged`` (a tagged-field
    section); ``prefix`` is the width of a length prefix, ``compact`` whether it is a varint.
    """

    start: int
    end: int
    kind: str
    path: str
    compact: bool = False
    nullable: bool = False
    prefix: int = 0
    #: For an array of scalars: the element type.
    elem: str = ""


@dataclass
class Seed:
    """A valid request frame (with its size prefix) and the spans of its fields."""

    api_key: int
    api_name: str
    version: int
    frame: bytes
    spans: list[Span] = field(default_factory=list)
    #: The broker sends no response (Produce with acks=0).
    no_response: bool = False


class _Writer:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.spans: list[Span] = []

    def pos(self) -> int:
        return self.buf.tell()

    def scalar(self, t: str, value: Any, path: str, nullable: bool, compact: bool) -> None:
        start = self.pos()
        scalar_construct(t, nullable, compact)._build(value, self.buf, _CTX, path)
        prefix = 0
        if t in ("string", "bytes", "records"):
            if compact:
                prefix = len(encode_uvarint(0 if value is None else len(_raw(value)) + 1))
            else:
                prefix = 2 if t == "string" else 4
        self.spans.append(Span(start, self.pos(), t, path, compact, nullable, prefix))


def _raw(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _walk(w: _Writer, fields: tuple[FieldSpec, ...], version: int, flexible: bool, obj: Any, path: str) -> None:
    """Encode ``obj`` as the codec does, recording a span per field."""
    for f in fields:
        if version not in f.versions or (flexible and version in f.tagged and f.tag is not None):
            continue
        compact = flexible if f.flexible is None else version in f.flexible
        nullable = version in f.nullable
        value = obj.get(f.attr, default_value(f, version))
        p = f"{path}.{f.attr}"
        if f.is_array:
            start = w.pos()
            if value is None:
                w.buf.write(b"\x00" if compact else b"\xff\xff\xff\xff")
            else:
                w.buf.write(encode_uvarint(len(value) + 1) if compact else struct.pack(">i", len(value)))
            w.spans.append(Span(start, w.pos(), "array", p, compact, nullable, w.pos() - start,
                                "" if f.is_struct else f.element_type))
            for i, item in enumerate(value or ()):
                if f.is_struct:
                    _walk(w, f.fields or (), version, flexible, item, f"{p}[{i}]")
                else:
                    w.scalar(f.element_type, item, f"{p}[{i}]", False, compact)
        elif f.is_struct:
            if nullable:
                start = w.pos()
                w.buf.write(b"\xff" if value is None else b"\x01")
                w.spans.append(Span(start, w.pos(), "nstruct", p))
                if value is None:
                    continue
            _walk(w, f.fields or (), version, flexible, value, p)
        else:
            w.scalar(f.type, value, p, nullable, compact)
    if flexible:
        start = w.pos()
        tagged = build_struct(fields, version, flexible).tagged
        assert tagged is not None
        tagged._build(obj, w.buf, _CTX, path)
        w.spans.append(Span(start, w.pos(), "tagged", f"{path}._tagged"))


def encode_traced(api: Api, version: int, correlation_id: int, body: dict[str, Any],
                  client_id: str | None = "fuzz") -> tuple[bytes, list[Span]]:
    """The framed request and its field spans (offsets include the 4-byte size prefix)."""
    w = _Writer()
    w.buf.write(b"\0\0\0\0")
    hv = api.request_header_version(version)
    header = load_message("RequestHeader")
    hbody = {"request_api_key": api.key, "request_api_version": version, "correlation_id": correlation_id,
             "client_id": client_id}
    _walk(w, header.fields, hv, hv in header.flexible, hbody, "header")
    _walk(w, api.request.fields, version, version in api.request.flexible, body, "body")
    data = bytearray(w.buf.getvalue())
    struct.pack_into(">i", data, 0, len(data) - 4)
    return bytes(data), w.spans


# ---------------------------------------------------------------- sensible values


_INT_HINTS: list[tuple[str, Callable[[random.Random], int]]] = [
    ("acks", lambda r: r.choice([-1, -1, 1, 1, 0])),
    ("max_wait", lambda r: r.choice([0, 10, 50])),
    ("timeout", lambda r: r.choice([0, 100, 1000])),
    ("session_timeout", lambda r: r.choice([6000, 10000, 30000])),
    ("rebalance_timeout", lambda r: r.choice([1000, 5000])),
    ("generation", lambda r: r.choice([-1, 0, 1, 2])),
    ("producer_id", lambda r: r.choice([-1, -1, 0, 1000])),
    ("producer_epoch", lambda r: r.choice([-1, 0])),
    ("epoch", lambda r: r.choice([-1, -1, 0])),
    ("isolation_level", lambda r: r.choice([0, 1])),
    ("max_bytes", lambda r: r.choice([1 << 20, 50 << 20, 1024])),
    ("partition", lambda r: r.choice([0, 0, 1, 2])),
    ("min_bytes", lambda r: r.choice([0, 1])),
    ("offset", lambda r: r.choice([0, 1, 5, -1, -2])),
    ("timestamp", lambda r: r.choice([-1, -2, 0, 1_700_000_000_000])),
    ("num_partitions", lambda r: r.choice([1, 2, 3, -1])),
    ("count", lambda r: r.choice([1, 2, 4])),
    ("replication_factor", lambda r: r.choice([1, -1])),
    ("resource_type", lambda r: r.choice([2, 2, 2, 4, 8])),
    ("config_operation", lambda r: r.choice([0, 1, 2, 3])),
    ("key_type", lambda r: r.choice([0, 1])),
    ("session_id", lambda r: r.choice([0, 0, 1])),
    ("session_epoch", lambda r: r.choice([-1, 0, 1])),
    ("replica_id", lambda r: r.choice([-1, -1, 0])),
    ("node_id", lambda r: r.choice([0, 1, -1])),
    ("transaction_timeout", lambda r: r.choice([60000, 1000])),
    ("error_code", lambda r: 0),
    ("generation_id_or_member_epoch", lambda r: r.choice([-1, -1, 0])),
]
#: The longest (most specific) hint first: ``session_timeout`` before ``timeout``.
_HINTS_BY_LENGTH = sorted(_INT_HINTS, key=lambda h: -len(h[0]))


class ValueGen:
    """Field-aware, seeded values for one request body."""

    def __init__(self, rnd: random.Random) -> None:
        self.r = rnd

    def message(self, api: Api, version: int) -> dict[str, Any]:
        return self.fields(api.request.fields, version, version in api.request.flexible, api.name)

    def fields(self, fields: tuple[FieldSpec, ...], version: int, flexible: bool, ctx: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            if version not in f.versions:
                continue
            if flexible and version in f.tagged and f.tag is not None and self.r.random() < 0.7:
                out[f.attr] = default_value(f, version)
                continue
            out[f.attr] = self.value(f, version, flexible, f"{ctx}.{f.attr}")
        return out

    def value(self, f: FieldSpec, version: int, flexible: bool, path: str) -> Any:
        r = self.r
        if version in f.nullable and r.random() < 0.1:
            return None
        if f.is_array:
            n = r.choice([1, 1, 1, 2, 0]) if f.is_struct else r.choice([1, 1, 2, 0])
            if f.is_struct:
                return [self.fields(f.fields or (), version, flexible, path) for _ in range(n)]
            return [self.scalar(f.element_type, f, path) for _ in range(n)]
        if f.is_struct:
            return self.fields(f.fields or (), version, flexible, path)
        return self.scalar(f.type, f, path)

    def scalar(self, t: str, f: FieldSpec, path: str) -> Any:
        r = self.r
        a = f.attr
        low = path.lower()
        if t in ("int8", "int16", "int32", "int64", "uint16", "uint32"):
            for hint, fn in _HINTS_BY_LENGTH:
                if hint in a:
                    v = fn(r)
                    return max(v, 0) if t.startswith("uint") else v
            return r.choice([0, 1, 2, -1]) if not t.startswith("uint") else r.choice([0, 1])
        if t == "bool":
            return r.random() < 0.5
        if t == "float64":
            return r.choice([0.0, 1.0])
        if t == "uuid":
            return uuid.UUID(int=0) if r.random() < 0.8 else uuid.UUID(int=r.getrandbits(128))
        if t == "records":
            return payloads.valid_batches(r)
        if t == "bytes":
            if "joingroup" in low and a == "metadata":
                return payloads.subscription(r)
            if "syncgroup" in low and a == "assignment":
                return payloads.assignment(r)
            return r.randbytes(r.choice([0, 4, 16]))
        if t == "string":
            return self.string(a, low)
        raise ValueError(f"no value for {t}")

    def string(self, a: str, low: str) -> str:
        r = self.r
        if "group_id" in a or a == "key" and "findcoordinator" in low or a == "coordinator_keys" or a == "groups":
            return r.choice(GROUPS)
        if a in ("member_id",):
            return r.choice(["", "", "fuzz-member"])
        if "instance_id" in a:
            return r.choice(["fuzz-inst-0", "fuzz-inst-1"])
        if a == "protocol_type":
            return "consumer"
        if a in ("protocol_name",) or a == "name" and "protocol" in low:
            return r.choice(["range", "roundrobin", "cooperative-sticky"])
        if a == "transactional_id":
            return "fuzz-tx"
        if a == "client_software_name":
            return "fuzz"
        if a == "client_software_version":
            return "1.0"
        if a == "rack_id" or a == "rack":
            return ""
        if a in ("name", "value") and ("config" in low or ".configs" in low):
            return "" if a == "value" else payloads.config_name(r)  # values: set with the name below
        if "topic" in a or a == "name" or a == "resource_name":
            if "createtopics" in low:
                return f"fuzz-c{r.randrange(16)}"
            return r.choice(TOPICS)
        if a == "metadata":
            return r.choice(["", "m"])
        if "states_filter" in a or "state" in a:
            return r.choice(["Stable", "Empty"])
        if "types_filter" in a:
            return r.choice(["classic", "consumer"])
        return r.choice(["", "x"])


def _fixups(api: Api, version: int, body: dict[str, Any], r: random.Random) -> None:
    """Make a few cross-field choices consistent, so seeds reach deep code."""
    for res in body.get("resources") or body.get("topics") or ():
        for c in res.get("configs") or () if isinstance(res, dict) else ():
            if "value" in c and c.get("name"):
                c["value"] = payloads.valid_config_value(c["name"], r)
    if api.name in ("AlterConfigs", "IncrementalAlterConfigs", "DescribeConfigs"):
        for res in body.get("resources") or ():
            rt = res.get("resource_type")
            if rt == 4:
                res["resource_name"] = r.choice(["", "0"])
                for c in res.get("configs") or ():
                    c["name"] = payloads.broker_config_name(r)
            elif rt == 8:
                res["resource_name"] = "0"
                for c in res.get("configs") or ():
                    # Loggers under our own prefix only: silencing the broker's loggers
                    # would hide the very errors the fuzzer looks for.
                    c["name"] = r.choice(["fuzz.logger", "fuzz"])
                    if c.get("value") is not None:
                        c["value"] = r.choice(["INFO", "DEBUG", "TRACE", "bogus", ""])
    if api.name == "CreateTopics":
        for t in body.get("topics") or ():
            if r.random() < 0.8:
                t["assignments"] = []
            else:
                t["num_partitions"], t["replication_factor"] = -1, -1
                t["assignments"] = [{"partition_index": 0, "broker_ids": [1]}]
    if api.name == "DeleteTopics":
        for t in body.get("topics") or ():
            t["name"] = f"fuzz-c{r.randrange(16)}"
        if "topic_names" in body:
            body["topic_names"] = [f"fuzz-c{r.randrange(16)}" for _ in body["topic_names"]]
    if api.name == "InitProducerId" and r.random() < 0.8 and "transactional_id" in body:
        body["transactional_id"] = None
    if api.name == "Produce":
        for t in body.get("topic_data") or ():
            for p in t.get("partition_data") or ():
                if p.get("records") is None:
                    p["records"] = payloads.valid_batches(r)


def make_seed(api: Api, version: int, r: random.Random) -> Seed:
    """One valid request for ``api`` at ``version``."""
    body = ValueGen(r).message(api, version)
    _fixups(api, version, body, r)
    frame, spans = encode_traced(api, version, r.randrange(1 << 20), body)
    return Seed(api.key, api.name, version, frame, spans,
                no_response=api.name == "Produce" and body.get("acks") == 0)


def served_versions() -> list[tuple[Api, int]]:
    """Every (API, version) the broker's handler registry serves."""
    from kbroker.handlers import registry

    table = api_table()
    return [(table[k], v) for k, h in registry().items() for v in range(h.versions.low, h.versions.high + 1)]


def build_corpus(seed: int, per_version: int = 3, captured: Path | None = CAPTURED) -> list[Seed]:
    """``per_version`` seeds for every served API version, deterministic in ``seed``, and the
    frames captured from real clients (``captured.txt``, see :mod:`tools.fuzz.capture`)."""
    r = random.Random(seed)
    out = [make_seed(api, v, r) for api, v in served_versions() for _ in range(per_version)]
    if captured is not None and captured.exists():
        out.extend(load_captured(captured))
    return out


def load_captured(path: Path) -> list[Seed]:
    """Captured frames as seeds: with field spans where the codec re-encodes them byte for byte."""
    table = api_table()
    served = set(served_versions_keys())
    out = []
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        _client, key, version, hx = line.split()
        k, v = int(key), int(version)
        if (k, v) not in served:
            continue
        frame = bytes.fromhex(hx)
        framed = struct.pack(">i", len(frame)) + frame
        api = table[k]
        req = decode_request(frame)
        again, spans = encode_traced(api, v, req.correlation_id, req.body, req.header.client_id)
        out.append(Seed(k, api.name, v, framed, spans if again == framed else [],
                        no_response=api.name == "Produce" and req.body.acks == 0))
    return out


def served_versions_keys() -> list[tuple[int, int]]:
    return [(api.key, v) for api, v in served_versions()]


def check_seed(s: Seed) -> None:
    """Raise unless the seed decodes and matches what the codec's own encoder writes."""
    req = decode_request(s.frame[4:])
    again = encode_request(s.api_key, s.version, req.correlation_id, req.body, req.header.client_id)
    if again != s.frame:
        raise AssertionError(f"{s.api_name} v{s.version}: traced encoding differs from the codec's")
