"""Mutations of seed frames: structure-aware, payload, byte-level and framing.

:meth:`Mutator.case` derives the ``i``-th test case from ``(seed, i)`` alone, so any case
can be regenerated from its index without replaying the run.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from kbroker.records.varint import decode_uvarint, encode_uvarint
from tools.fuzz import payloads
from tools.fuzz.corpus import Seed, Span
from tools.fuzz.payloads import NON_UTF8, boundary_bytes, hostile_uvarint

#: Strategy -> weight. ``valid`` keeps broker state interesting (topics, groups, data).
STRATEGIES = {"valid": 10, "field": 35, "payload": 20, "bytes": 25, "framing": 10}


@dataclass(frozen=True)
class Case:
    """One test case: the bytes to put on the wire (one or more size-prefixed frames)."""

    index: int
    strategy: str
    api_key: int
    api_name: str
    version: int
    wire: bytes
    #: The request's seed is answered (no acks=0 produce) and its framing is intact.
    expect_response: bool


def _len_prefix(span: Span, n: int | None) -> bytes:
    """The length prefix of a string/bytes/array field holding ``n`` items (None: null)."""
    if span.compact:
        return encode_uvarint(0 if n is None else n + 1)
    if span.kind == "string":
        return struct.pack(">h", -1 if n is None else n)
    return struct.pack(">i", -1 if n is None else n)


def _hostile_prefix(span: Span, r: random.Random) -> bytes:
    if span.compact:
        return hostile_uvarint(r)
    if span.kind == "string":
        return struct.pack(">h", r.choice(payloads.INT16))
    return struct.pack(">i", r.choice(payloads.INT32))


def _flood(span: Span, old: bytes, r: random.Random) -> bytes:
    """Many minimal elements in front of an array's own: a small request that costs the broker
    a decoded object per byte or two (work out of proportion to its size)."""
    if span.compact:
        count = decode_uvarint(old)[0] - 1
    else:
        (count,) = struct.unpack(">i", old)
    n = r.choice([10_000, 100_000])
    if span.elem == "string":
        minimal = b"\x01" if span.compact else b"\x00\x00"
    elif span.elem in ("bytes", "records"):
        minimal = b"\x01" if span.compact else b"\x00\x00\x00\x00"
    else:
        minimal = b"\x00" * (16 if span.elem == "uuid" else payloads.WIDTH.get(span.elem, 4))
    return _len_prefix(span, max(count, 0) + n) + minimal * n


class Mutator:
    """Deterministic test cases over a corpus of seeds."""

    def __init__(self, corpus: list[Seed], seed: int, strategies: dict[str, int] | None = None) -> None:
        self.corpus = corpus
        self.seed = seed
        weights = strategies or STRATEGIES
        self._names = list(weights)
        self._weights = [weights[n] for n in self._names]
        self._payload_seeds = [s for s in corpus if any(self._payload_span(s, sp) for sp in s.spans)]

    @staticmethod
    def _payload_span(seed: Seed, span: Span) -> bool:
        return span.kind == "records" or span.kind == "bytes" and (
            seed.api_name == "JoinGroup" and span.path.endswith(".metadata")
            or seed.api_name == "SyncGroup" and span.path.endswith(".assignment")) or (
            span.kind == "string" and ".configs[" in span.path)

    def case(self, i: int) -> Case:
        """The ``i``-th case of this run."""
        r = random.Random(self.seed * 1_000_003 + i)
        strategy = r.choices(self._names, self._weights)[0]
        pool = self._payload_seeds if strategy == "payload" and self._payload_seeds else self.corpus
        seed = r.choice(pool)
        frame = bytearray(seed.frame)
        # A fresh correlation id per case: responses can be matched to requests.
        struct.pack_into(">i", frame, 8, i & 0x7FFFFFFF)
        expect = not seed.no_response
        if strategy == "field":
            frame = self._fields(seed, frame, r)
        elif strategy == "payload":
            frame = self._payload(seed, frame, r)
        elif strategy == "bytes":
            frame = self._bytes(seed, frame, r)
        elif strategy == "framing":
            wire, framed_ok = self._framing(frame, r)
            return Case(i, strategy, seed.api_key, seed.api_name, seed.version, wire, expect and framed_ok)
        return Case(i, strategy, seed.api_key, seed.api_name, seed.version, bytes(frame), expect)

    # ------------------------------------------------------------ structure-aware

    def _replace(self, frame: bytearray, edits: list[tuple[Span, bytes]]) -> bytearray:
        for span, data in sorted(edits, key=lambda e: e[0].start, reverse=True):
            frame[span.start:span.end] = data
        struct.pack_into(">i", frame, 0, len(frame) - 4)
        return frame

    def _field_bytes(self, seed: Seed, span: Span, old: bytes, r: random.Random) -> bytes:
        k = span.kind
        if k in payloads.WIDTH:
            return boundary_bytes(k, r)
        if k == "uuid":
            return r.choice([b"\0" * 16, b"\xff" * 16, r.randbytes(16)])
        if k == "nstruct":
            return bytes([r.choice([0, 1, 0x7F, 0xFE, 0xFF])])
        if k == "tagged":
            return r.choice([
                hostile_uvarint(r),
                b"\x01" + hostile_uvarint(r),
                b"\x01\x00" + hostile_uvarint(r),
                b"\x02\x05\x00\x03\x00",  # out of order
                b"\x02\x00\x00\x00\x00",  # duplicate tag
                b"\x01\x00\x04" + r.randbytes(4),  # tag 0 with garbage
                b"\x01" + encode_uvarint(r.randrange(8)) + b"\x01\xff",
                b"\x01\x7f\x00",
            ])
        if k == "array":
            if span.elem and r.random() < 0.01:
                return _flood(span, old, r)
            if span.compact:
                return hostile_uvarint(r)
            return struct.pack(">i", r.choice(payloads.INT32))
        content = old[span.prefix:]
        choice = r.randrange(6)
        if choice == 0 or not content and choice < 3:
            return _hostile_prefix(span, r) + content
        if choice == 1:
            return _len_prefix(span, None)  # null, valid only where the field is nullable
        if choice == 2:
            bad = r.choice(NON_UTF8)
            data = (content[:-len(bad)] + bad) if len(content) >= len(bad) else bad
            return _len_prefix(span, len(data)) + data
        if choice == 3:
            return _len_prefix(span, 0)
        if choice == 4:
            n = r.choice([0x7FFF, 0x8000, 1 << 16, 1 << 20]) if span.compact or span.kind != "string" else 0x7FFF
            return _len_prefix(span, n) + (b"a" * n)
        # Declared length beyond the data that follows.
        return _len_prefix(span, len(content) + r.choice([1, 2, 100])) + content

    def mutate_fields(self, seed: Seed, r: random.Random) -> bytearray:
        """``seed``'s frame with one to three fields (or a payload) set to hostile values."""
        frame = bytearray(seed.frame)
        if r.random() < 0.5 and any(self._payload_span(seed, sp) for sp in seed.spans):
            return self._payload(seed, frame, r)
        return self._fields(seed, frame, r)

    def _fields(self, seed: Seed, frame: bytearray, r: random.Random) -> bytearray:
        # Mostly body fields; the header's too (client id, tagged fields, key, version) now and then.
        body = [s for s in seed.spans if s.path.startswith("body") or r.random() < 0.1]
        if not body:
            return frame
        picked = r.sample(body, min(len(body), r.choice([1, 1, 1, 2, 3])))
        return self._replace(frame, [(s, self._field_bytes(seed, s, bytes(frame[s.start:s.end]), r))
                                     for s in picked])

    def _payload(self, seed: Seed, frame: bytearray, r: random.Random) -> bytearray:
        spans = [s for s in seed.spans if self._payload_span(seed, s)]
        if not spans:
            return self._fields(seed, frame, r)
        span = r.choice(spans)
        if span.kind == "records":
            data = payloads.crafted_batches(r)
        elif span.kind == "string":
            if span.path.endswith(".value"):
                data = payloads.config_value(r).encode()
            else:
                data = r.choice([payloads.config_name(r), payloads.broker_config_name(r), "", "x" * 300]).encode()
        elif seed.api_name == "JoinGroup":
            data = payloads.subscription(r, hostile=True)
        else:
            data = payloads.assignment(r, hostile=True)
        return self._replace(frame, [(span, _len_prefix(span, len(data)) + data)])

    # ------------------------------------------------------------ byte-level

    def _bytes(self, seed: Seed, frame: bytearray, r: random.Random) -> bytearray:
        for _ in range(r.choice([1, 1, 2, 4])):
            n = len(frame)
            op = r.randrange(8)
            if n <= 4:
                break
            pos = r.randrange(4, n)
            if op == 0:
                for _ in range(r.choice([1, 1, 2, 8])):
                    p = r.randrange(4, n)
                    frame[p] ^= 1 << r.randrange(8)
            elif op == 1:
                frame[pos] = r.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, r.randrange(256)])
            elif op == 2:
                frame[pos:pos] = r.randbytes(r.choice([1, 2, 4, 16]))
            elif op == 3:
                del frame[pos:pos + r.choice([1, 2, 4, 16])]
            elif op == 4:
                del frame[r.randrange(4, n):]
            elif op == 5:
                # Corrupt a length or count field without adjusting the data behind it.
                spans = [s for s in seed.spans if s.prefix and s.end <= n]
                if spans:
                    s = r.choice(spans)
                    frame[s.start:s.start + s.prefix] = _hostile_prefix(s, r)
            elif op == 6:
                other = r.choice(self.corpus).frame
                a = r.randrange(4, len(other))
                frame[pos:] = other[a:a + r.randrange(1, 64)]
            elif n >= 8:
                # Overwrite the API key / version with another served (or unknown) one.
                struct.pack_into(">hh", frame, 4, r.choice([r.choice(self.corpus).api_key, -1, 67, 32767]),
                                 r.choice([0, 1, 3, 9, -1, 32767]))
        if len(frame) >= 4:
            struct.pack_into(">i", frame, 0, len(frame) - 4)
        return frame

    # ------------------------------------------------------------ framing

    def _framing(self, frame: bytearray, r: random.Random) -> tuple[bytes, bool]:
        op = r.randrange(6)
        body = bytes(frame[4:])
        if op == 0:  # declared size a little off: the next frame's bytes are read as this one's
            declared = max(0, len(body) + r.choice([-8, -4, -1, 1, 4, 8]))
            return struct.pack(">i", declared) + body, False
        if op == 1:  # huge declared size
            return struct.pack(">i", r.choice([2**31 - 1, 100 * 1024 * 1024 + 1, 1 << 30])) + body, False
        if op == 2:  # zero size, then the real frame
            return b"\0\0\0\0" + bytes(frame), False
        if op == 3:  # negative size
            return struct.pack(">i", r.choice([-1, -(2**31), -4])) + body, False
        if op == 4:  # random bytes
            return r.randbytes(r.choice([1, 3, 4, 7, 64])), False
        # A frame shorter than a request header.
        n = r.choice([0, 1, 4, 7])
        return struct.pack(">i", n) + body[:n], False
