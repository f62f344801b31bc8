"""Payloads inside requests: record batches, consumer protocol bytes, config values.

Each has a valid form (for seeds) and a crafted form that sets one field of the
structure to a hostile value, optionally keeping the CRC and lengths consistent so
that deeper checks are reached.
"""

from __future__ import annotations

import random
import struct

from kbroker.records.compression import compress
from kbroker.records.crc import crc32c
from kbroker.records.varint import encode_uvarint, encode_varint, encode_varlong

# ---------------------------------------------------------------- interesting values

INT8 = (-128, -1, 0, 1, 127)
INT16 = (-32768, -1, 0, 1, 2, 32767)
INT32 = (-(2**31), -2, -1, 0, 1, 2, 0x7FFF, 0x8000, 0xFFFF, 2**30, 2**31 - 1)
INT64 = (-(2**63), -(2**31), -2, -1, 0, 1, 2**31 - 1, 2**32, 2**63 - 1)
WIDTH = {"int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "float64": 8, "bool": 1}
FMT = {"int8": ">b", "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q"}
BOUNDARY = {"int8": INT8, "int16": INT16, "int32": INT32, "int64": INT64, "uint16": (0, 1, 0x7FFF, 0xFFFF),
            "uint32": (0, 1, 0x7FFFFFFF, 0xFFFFFFFF)}


def boundary_bytes(t: str, r: random.Random) -> bytes:
    """A boundary value of fixed-width type ``t``, encoded."""
    if t == "float64":
        return struct.pack(">d", r.choice([float("nan"), float("inf"), -float("inf"), -0.0, 1e308, -1.0]))
    if t == "bool":
        return bytes([r.choice([0, 1, 2, 0x7F, 0xFF])])
    return struct.pack(FMT[t], r.choice(BOUNDARY[t]))


def hostile_uvarint(r: random.Random) -> bytes:
    """Unsigned varints that are huge, overlong, unterminated or zero."""
    return r.choice([
        b"\x00", b"\x01", b"\x7f", encode_uvarint(0xFFFFFFFF), encode_uvarint(0x7FFFFFFF),
        encode_uvarint(2**31), b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\xff" * 11, b"\x80", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", encode_uvarint(1 << 20),
    ])


def hostile_varint(r: random.Random) -> bytes:
    """Zig-zag varints: boundary values, overlong and unterminated encodings."""
    return r.choice([
        encode_varint(-1), encode_varint(-2), encode_varint(0), encode_varint(2**31 - 1),
        encode_varint(-(2**31)), encode_varint(1 << 20), encode_varlong(2**40), b"\xff" * 6,
        b"\x80", b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x00",
    ])


NON_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"a\x80b", b"\xc0\xaf")

# ---------------------------------------------------------------- record batches

_HEADER = struct.Struct(">qiibIhiqqqhii")
#: (name, offset, struct format) of every header field of a magic-2 batch.
BATCH_FIELDS = (
    ("base_offset", 0, ">q"), ("batch_length", 8, ">i"), ("partition_leader_epoch", 12, ">i"),
    ("magic", 16, ">b"), ("crc", 17, ">I"), ("attributes", 21, ">h"), ("last_offset_delta", 23, ">i"),
    ("base_timestamp", 27, ">q"), ("max_timestamp", 35, ">q"), ("producer_id", 43, ">q"),
    ("producer_epoch", 51, ">h"), ("base_sequence", 53, ">i"), ("record_count", 57, ">i"),
)
ATTRIBUTE_VALUES = (0, 1, 2, 3, 4, 5, 6, 7, 0x08, 0x10, 0x20, 0x30, 0x40, 0x7FFF, -1, 0x13, 0x24)


def _bytes_field(data: bytes | None) -> bytes:
    return encode_varint(-1) if data is None else encode_varint(len(data)) + data


def record(r: random.Random, delta: int, hostile: str | None = None) -> bytes:
    """One record (length-prefixed); ``hostile`` names a field to corrupt."""
    key = r.choice([None, b"k", b"key-%d" % delta])
    value = r.choice([None, b"", b"v" * r.choice([1, 10, 100])])
    headers = [(b"h", b"x")] if r.random() < 0.3 else []
    parts = {
        "attributes": b"\x00",
        "timestamp_delta": encode_varlong(delta),
        "offset_delta": encode_varint(delta),
        "key": _bytes_field(key),
        "value": _bytes_field(value),
        "headers": encode_varint(len(headers)) + b"".join(_bytes_field(k) + _bytes_field(v) for k, v in headers),
    }
    length_override: bytes | None = None
    if hostile == "attributes":
        parts["attributes"] = bytes([r.choice([1, 0x80, 0xFF])])
    elif hostile in ("timestamp_delta", "offset_delta"):
        parts[hostile] = hostile_varint(r)
    elif hostile == "key":
        parts["key"] = hostile_varint(r) + (key or b"")
    elif hostile == "value":
        parts["value"] = hostile_varint(r) + (value or b"")
    elif hostile == "headers":
        parts["headers"] = r.choice([
            hostile_varint(r),
            encode_varint(1) + hostile_varint(r) + b"h" + _bytes_field(b"x"),
            encode_varint(1) + _bytes_field(b"h") + hostile_varint(r) + b"x",
            encode_varint(1) + _bytes_field(b"\xff\xfe") + _bytes_field(b"x"),
            encode_varint(1) + encode_varint(-1) + _bytes_field(b"x"),
        ])
    elif hostile == "length":
        length_override = hostile_varint(r)
    body = b"".join(parts.values())
    if hostile == "trailing":
        body += b"\x00\x01"
    return (length_override if length_override is not None else encode_varint(len(body))) + body


RECORD_FIELDS = ("attributes", "timestamp_delta", "offset_delta", "key", "value", "headers", "length", "trailing")


def batch(r: random.Random, *, n: int | None = None, codec: int = 0, hostile_record: str | None = None,
          producer: tuple[int, int, int] = (-1, -1, -1), attributes: int = 0) -> bytearray:
    """A magic-2 batch with a correct CRC and length (records possibly hostile)."""
    n = r.choice([1, 1, 2, 3]) if n is None else n
    recs = [record(r, i, hostile_record if i == n - 1 else None) for i in range(n)]
    payload = b"".join(recs)
    if codec:
        payload = compress(codec, payload)
    ts = 1_700_000_000_000 + r.randrange(1000)
    pid, epoch, seq = producer
    header = _HEADER.pack(0, 49 + len(payload), -1, 2, 0, (attributes & ~7) | codec, max(n - 1, 0), ts, ts + n,
                          pid, epoch, seq, n)
    out = bytearray(header + payload)
    fix_crc(out)
    return out


def fix_crc(b: bytearray, pos: int = 0) -> None:
    """Recompute the CRC-32C of the batch at ``pos`` (attributes to its declared end)."""
    if len(b) - pos < 61:
        return
    (length,) = struct.unpack_from(">i", b, pos + 8)
    end = min(len(b), pos + 12 + max(length, 0))
    struct.pack_into(">I", b, pos + 17, crc32c(memoryview(b)[pos + 21 : max(end, pos + 21)]))


def valid_batches(r: random.Random) -> bytes:
    """One or two valid batches, sometimes compressed."""
    codec = r.choice([0, 0, 0, 1, 2, 3, 4])
    out = bytes(batch(r, codec=codec))
    if r.random() < 0.2:
        out += bytes(batch(r))
    return out


def crafted_batches(r: random.Random) -> bytes:
    """A record set with one hostile field, the CRC recomputed most of the time."""
    choice = r.random()
    recompute = r.random() < 0.8
    if choice < 0.45:
        b = batch(r, codec=r.choice([0, 0, 1, 2, 3, 4]))
        name, off, fmt = r.choice(BATCH_FIELDS)
        if name == "attributes":
            value = r.choice(ATTRIBUTE_VALUES)
        elif name == "magic":
            value = r.choice([-1, 0, 1, 3, 127])
        else:
            value = r.choice(INT64 if fmt == ">q" else INT32 if fmt in (">i", ">I") else INT16)
        try:
            struct.pack_into(fmt, b, off, value)
        except struct.error:
            struct.pack_into(fmt, b, off, value & 0x7FFFFFFF)
        if recompute and name != "crc":
            fix_crc(b)
        return bytes(b)
    if choice < 0.7:
        codec = r.choice([0, 0, 0, 1, 2, 3, 4])
        b = batch(r, codec=codec, hostile_record=r.choice(RECORD_FIELDS))
        if not recompute:
            b[-1] ^= 0x01
        return bytes(b)
    if choice < 0.8:
        # Compression bits that do not match the payload (or an unknown codec).
        b = batch(r)
        struct.pack_into(">h", b, 21, r.choice([1, 2, 3, 4, 5, 6, 7]))
        if recompute:
            fix_crc(b)
        return bytes(b)
    if choice < 0.85:
        # Idempotent / transactional / control batches.
        attrs = r.choice([0x10, 0x20, 0x30])
        return bytes(batch(r, producer=(r.choice([0, 1000, 2**63 - 1]), r.choice([0, -1, 32767]),
                                        r.choice([0, 5, 2**31 - 1])), attributes=attrs))
    if choice < 0.9:
        # Legacy magic 0/1 message sets.
        magic = r.choice([0, 1])
        legacy = b"legacy"
        body = struct.pack(">bb", magic, 0) + (struct.pack(">q", 0) if magic else b"") + struct.pack(">i", -1) + \
            struct.pack(">i", len(legacy)) + legacy
        msg = struct.pack(">I", crc32c(body) if r.random() < 0.5 else 0) + body
        return struct.pack(">qi", 0, len(msg)) + msg
    if choice < 0.95:
        # Truncated or with trailing garbage after valid batches.
        two = bytes(batch(r)) + bytes(batch(r))
        return two[: r.randrange(1, len(two))] if r.random() < 0.5 else two + r.randbytes(r.choice([1, 11, 12, 60]))
    # Many tiny records: a record count the CRC covers honestly.
    return bytes(batch(r, n=r.choice([200, 1000])))


# ---------------------------------------------------------------- consumer protocol


def _str(s: bytes | None) -> bytes:
    return b"\xff\xff" if s is None else struct.pack(">h", len(s)) + s


def _bytes(s: bytes | None) -> bytes:
    return b"\xff\xff\xff\xff" if s is None else struct.pack(">i", len(s)) + s


def subscription(r: random.Random, hostile: bool = False) -> bytes:
    """ConsumerProtocolSubscription (versions 0-3), valid unless ``hostile``."""
    version = r.choice([0, 1, 2, 3])
    topics = [b"fuzz-0"] if r.random() < 0.7 else [b"fuzz-0", b"fuzz-1"]
    parts = [struct.pack(">h", version), struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics),
             _bytes(r.choice([None, b"", b"ud"]))]
    if version >= 1:
        parts.append(struct.pack(">i", 1) + _str(b"fuzz-0") + struct.pack(">ii", 1, 0))
    if version >= 2:
        parts.append(struct.pack(">i", r.choice([-1, 0, 1])))
    if version >= 3:
        parts.append(_str(r.choice([None, b"rack"])))
    if hostile:
        i = r.randrange(len(parts))
        parts[i] = r.choice([
            struct.pack(">i", r.choice([-2, 2**31 - 1, 2**20])),
            struct.pack(">h", r.choice([-1, -2, 32767])),
            _str(r.choice(NON_UTF8)),
            b"",
            parts[i][: max(len(parts[i]) - 1, 0)],
        ])
        if r.random() < 0.2:
            return r.randbytes(r.choice([0, 1, 2, 7, 40]))
    return b"".join(parts)


def assignment(r: random.Random, hostile: bool = False) -> bytes:
    """ConsumerProtocolAssignment (versions 0-3), valid unless ``hostile``."""
    version = r.choice([0, 1, 3])
    parts = [struct.pack(">h", version),
             struct.pack(">i", 1) + _str(b"fuzz-0") + struct.pack(">i", 2) + struct.pack(">ii", 0, 1),
             _bytes(r.choice([None, b"", b"ud"]))]
    if hostile:
        i = r.randrange(len(parts))
        parts[i] = r.choice([
            struct.pack(">i", r.choice([-2, 2**31 - 1, 2**20])),
            struct.pack(">h", r.choice([-1, 32767])),
            struct.pack(">i", 1) + _str(b"fuzz-0") + struct.pack(">i", 2**31 - 1),
            _str(r.choice(NON_UTF8)),
            b"",
        ])
        if r.random() < 0.2:
            return r.randbytes(r.choice([0, 1, 2, 7, 40]))
    return b"".join(parts)


# ---------------------------------------------------------------- configs

TOPIC_CONFIGS = (
    "cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms", "max.message.bytes",
    "min.insync.replicas", "compression.type", "message.timestamp.type", "message.timestamp.difference.max.ms",
    "min.cleanable.dirty.ratio", "delete.retention.ms", "segment.index.bytes", "index.interval.bytes",
    "flush.messages", "flush.ms", "unclean.leader.election.enable", "file.delete.delay.ms",
    "message.downconversion.enable", "preallocate", "local.retention.ms", "no.such.config",
)
#: Broker keys whose hostile values cannot stop a later produce/consume health check.
BROKER_CONFIGS = (
    "log.retention.ms", "log.cleaner.threads", "log.cleaner.min.cleanable.ratio", "background.threads",
    "log.retention.bytes", "num.io.threads", "no.such.broker.config", "log.segment.delete.delay.ms",
)
CONFIG_VALUES = (
    "0", "1", "-1", "-2", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808",
    "99999999999999999999999", "", " ", "abc", "NaN", "Infinity", "1e308", "0.5", "-0.5", "true", "false",
    "compact", "delete", "compact,delete", "delete,,compact", "gzip", "zstd", "producer", "bogus",
    "CreateTime", "LogAppendTime", "ü", "\x00", "x" * 1000, "1,2,3", "0x10",
)


_VALID = {
    "cleanup.policy": ("delete", "compact", "compact,delete"), "compression.type": ("producer", "gzip", "zstd"),
    "message.timestamp.type": ("CreateTime", "LogAppendTime"), "min.cleanable.dirty.ratio": ("0.5",),
    "unclean.leader.election.enable": ("false",), "message.downconversion.enable": ("true",),
    "preallocate": ("false",), "min.insync.replicas": ("1",), "max.message.bytes": ("1048588", "100000"),
    "segment.bytes": ("1073741824", "1048576"), "log.cleaner.min.cleanable.ratio": ("0.5",),
    "log.cleaner.threads": ("1",), "background.threads": ("10",), "num.io.threads": ("8",),
}


def valid_config_value(name: str, r: random.Random) -> str:
    """A value ``name`` accepts (a number of milliseconds or bytes for most keys)."""
    return r.choice(_VALID.get(name, ("1000", "60000", "-1")))


def config_name(r: random.Random) -> str:
    return r.choice(TOPIC_CONFIGS)


def broker_config_name(r: random.Random) -> str:
    return r.choice(BROKER_CONFIGS)


def config_value(r: random.Random) -> str:
    return r.choice(CONFIG_VALUES)
