"""The iteration order of Java's ``HashSet``/``HashMap`` of strings.

Kafka answers some lists in the order a ``HashSet`` or ``HashMap`` of names iterates (the
mechanisms of a SaslHandshake response, the users of an AlterUserScramCredentials response).
That order is deterministic: it follows ``String.hashCode``, the spreading of ``HashMap.hash``
and the table size, with the keys of one bucket in insertion order. These helpers reproduce
it for string keys.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def java_string_hash(s: str) -> int:
    """``String.hashCode()``: over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    data = s.encode("utf-16-be", errors="surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _spread(h: int) -> int:
    """``HashMap.hash``: the high half folded into the low half."""
    u = h & 0xFFFFFFFF
    return u ^ (u >> 16)


def _table_size_for(cap: int) -> int:
    n = 1
    while n < cap:
        n <<= 1
    return n


def java_hash_order(keys: Iterable[str], initial_capacity: int = 16) -> list[str]:
    """``keys`` (duplicates dropped) in the order a ``HashMap`` created with
    ``initial_capacity`` and filled in this order iterates them (resizing as Java does at a
    load factor of 0.75). Buckets holding eight or more keys (a tree in Java) are not modelled."""
    return java_hash_order_by(keys, java_string_hash, initial_capacity)


def java_hash_order_by(keys: Iterable[K], hash_code: Callable[[K], int], initial_capacity: int = 16) -> list[K]:
    """As :func:`java_hash_order`, for keys whose Java ``hashCode()`` is ``hash_code(key)``."""
    unique = list(dict.fromkeys(keys))
    size = _table_size_for(max(1, initial_capacity))
    while len(unique) > size * 3 // 4:
        size <<= 1
    # A resize keeps each bucket's relative order, so the final table size alone decides.
    buckets: dict[int, list[K]] = {}
    for k in unique:
        buckets.setdefault(_spread(hash_code(k)) & (size - 1), []).append(k)
    return [k for b in sorted(buckets) for k in buckets[b]]


def java_map_hash(entries: Iterable[tuple[str, str | None]]) -> int:
    """``Map<String, String>.hashCode()``: the sum of ``key.hashCode() ^ value.hashCode()``
    (a null value hashes to 0), as a signed 32-bit int."""
    h = 0
    for k, v in entries:
        h = (h + (java_string_hash(k) ^ (java_string_hash(v) if v is not None else 0))) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def java_hash_set_order(keys: Iterable[str]) -> list[str]:
    """The order of ``new ArrayList<>(new HashSet<>(collection))`` for ``keys``."""
    unique = list(dict.fromkeys(keys))
    return java_hash_order(unique, max(int(len(unique) / 0.75) + 1, 16))
