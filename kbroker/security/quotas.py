"""Client quotas, as Kafka's ClientQuotaManager family enforces them.

Quota configs are set on entities: a user, a client id, a user and client id together,
their defaults (a ``None`` name), and IP addresses (``connection_creation_rate`` only).
For a request from user ``u`` with client id ``c`` the first entity of this list that
sets the quota in question applies (Kafka's precedence)::

    user=u,client-id=c   user=u,client-id=<default>   user=u
    user=<default>,client-id=c   user=<default>,client-id=<default>   user=<default>
    client-id=c   client-id=<default>

Usage is measured per matched entity, defaults standing for the actual names (all of
user ``u``'s clients share one measure when the ``user=u`` quota applies).

Rates are Kafka's sampled rate (``quota.window.num`` samples of
``quota.window.size.seconds``); a client over its quota is throttled for
``(observed - quota) / quota * window`` milliseconds. ``controller_mutation_rate`` uses
Kafka's token bucket instead (burst of ``samples * window * quota``), strict for the
request versions that can answer THROTTLING_QUOTA_EXCEEDED and permissive before.

The configs are kept in a :class:`~kbroker.security.store.StateStore` under kind
``quotas``; alterations are durable before they take effect.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from kbroker.clock import Clock
from kbroker.security.java_order import java_hash_order, java_hash_order_by, java_map_hash
from kbroker.security.store import StateStore

log = logging.getLogger(__name__)

STORE_KIND = "quotas"

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
ENTITY_TYPES = (USER, CLIENT_ID, IP)

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"

#: Quota keys for user/client-id entities and whether each takes whole numbers (Kafka's LONG).
CLIENT_QUOTA_KEYS: dict[str, bool] = {
    PRODUCER_BYTE_RATE: True,
    CONSUMER_BYTE_RATE: True,
    REQUEST_PERCENTAGE: False,
    CONTROLLER_MUTATION_RATE: False,
}
#: Quota keys for IP entities (Kafka's INT).
IP_QUOTA_KEYS: dict[str, bool] = {CONNECTION_CREATION_RATE: True}

#: DescribeClientQuotas match types.
MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2

THROTTLING_MESSAGE = "The throttling quota has been exceeded."
_INT_MAX = 2**31 - 1
#: Measures kept before idle ones are dropped.
_MAX_SENSORS = 10_000

#: An entity: its (type, name) parts sorted by type; a None name is that type's default.
Entity = tuple[tuple[str, str | None], ...]


class QuotaError(Exception):
    """A quota request Kafka refuses with INVALID_REQUEST; the message says why."""


class QuotaUnsupported(QuotaError):
    """A describe filter naming an entity type Kafka answers with UNSUPPORTED_VERSION."""


def entity(parts: Iterable[tuple[str, str | None]]) -> Entity:
    """The canonical form of an entity given as (type, name) pairs."""
    return tuple(sorted(parts))


def user_name(principal: str) -> str:
    """The user entity name of a principal (``User:alice`` -> ``alice``)."""
    _, sep, name = principal.partition(":")
    return name if sep else principal


# -- rates -----------------------------------------------------------------------------


class SampledRate:
    """Kafka's ``Rate`` over a ``SampledStat``: ``samples`` windows of ``window_ms``.

    The rate is the sum of the live samples over the time they span, that span being at
    least ``samples - 1`` windows (so a first burst is spread over the full window)."""

    __slots__ = ("samples", "window_ms", "_starts", "_values", "_current")

    def __init__(self, samples: int, window_ms: int) -> None:
        self.samples = samples
        self.window_ms = window_ms
        self._starts: list[int] = []
        self._values: list[float] = []
        self._current = 0

    def record(self, value: float, now_ms: int) -> None:
        """Add ``value`` at ``now_ms``."""
        if not self._starts:
            self._starts.append(now_ms)
            self._values.append(0.0)
        elif now_ms - self._starts[self._current] >= self.window_ms:
            self._current = (self._current + 1) % self.samples
            if self._current >= len(self._starts):
                self._starts.append(now_ms)
                self._values.append(0.0)
            else:
                self._starts[self._current] = now_ms
                self._values[self._current] = 0.0
        self._values[self._current] += value

    def _purge(self, now_ms: int) -> None:
        expire = self.samples * self.window_ms
        for i, start in enumerate(self._starts):
            if now_ms - start >= expire:
                self._starts[i] = now_ms
                self._values[i] = 0.0

    def window_size_ms(self, now_ms: int) -> int:
        """The span the rate is measured over (Kafka's ``Rate.windowSize``)."""
        self._purge(now_ms)
        oldest = min(self._starts) if self._starts else now_ms
        elapsed = now_ms - oldest
        full = elapsed // self.window_ms
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return max(elapsed, 1)

    def measure(self, now_ms: int) -> float:
        """The rate per second at ``now_ms``."""
        window = self.window_size_ms(now_ms)
        return sum(self._values) / (window / 1000.0)

    def throttle_ms(self, quota: float, now_ms: int) -> int:
        """Kafka's throttle time for the rate against an upper-bound ``quota`` (0 within it)."""
        window = self.window_size_ms(now_ms)
        observed = sum(self._values) / (window / 1000.0)
        if observed <= quota:
            return 0
        if quota <= 0:
            return _INT_MAX
        return min(_INT_MAX, round((observed - quota) / quota * window))


class TokenBucket:
    """Kafka's ``TokenBucket`` stat (KIP-599): starts full with ``samples * window * quota``
    tokens, refills at ``quota`` per second, goes negative when more is taken."""

    __slots__ = ("burst_seconds", "tokens", "_last_ms")

    def __init__(self, samples: int, window_ms: int) -> None:
        self.burst_seconds = samples * window_ms / 1000.0
        self.tokens = 0.0
        self._last_ms: int | None = None

    def _refill(self, quota: float, now_ms: int) -> None:
        burst = self.burst_seconds * quota
        if self._last_ms is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + quota * (now_ms - self._last_ms) / 1000.0)
        self._last_ms = now_ms

    def measure(self, quota: float, now_ms: int) -> float:
        """The tokens left at ``now_ms``."""
        self._refill(quota, now_ms)
        return self.tokens

    def record(self, quota: float, value: float, now_ms: int) -> None:
        """Take ``value`` tokens."""
        self._refill(quota, now_ms)
        self.tokens = min(self.burst_seconds * quota, self.tokens - value)

    def throttle_ms(self, quota: float, now_ms: int) -> int:
        """The time until the bucket is back to zero (0 while tokens are left)."""
        tokens = self.measure(quota, now_ms)
        if tokens >= 0:
            return 0
        return _INT_MAX if quota <= 0 else min(_INT_MAX, round(-tokens / quota * 1000))


class MutationQuota:
    """One request's view of its ``controller_mutation_rate`` quota (Kafka's
    Strict/PermissiveControllerMutationQuota)."""

    def __init__(self, bucket: TokenBucket, quota: float, clock: Clock, strict: bool) -> None:
        self._bucket = bucket
        self._quota = quota
        self._clock = clock
        self.strict = strict
        self._throttle_ms = 0
        self._recorded_ms = 0

    def accept(self, partitions: int) -> bool:
        """Record ``partitions`` mutations; False when a strict quota refuses them (the
        topic then answers THROTTLING_QUOTA_EXCEEDED). A strict quota accepts anything
        while tokens are left, so one large topic is not refused for good."""
        now = self._clock.time_ms()
        bucket, quota = self._bucket, self._quota
        if self.strict:
            throttle = bucket.throttle_ms(quota, now)
            if throttle > 0:
                self._throttle_ms, self._recorded_ms = throttle, now
                return False
            bucket.record(quota, partitions, now)
            return True
        bucket.record(quota, partitions, now)
        throttle = bucket.throttle_ms(quota, now)
        if throttle > 0:
            self._throttle_ms, self._recorded_ms = throttle, now
        return True

    @property
    def throttle_time_ms(self) -> int:
        """The throttle time recorded, less the time since (as Kafka reports it)."""
        return max(0, self._throttle_ms - (self._clock.time_ms() - self._recorded_ms))


# -- validation ------------------------------------------------------------------------


def entity_map(parts: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    """An AlterClientQuotas entity as Kafka reads it: a map of type to name, a type given
    twice keeping its last name."""
    out: dict[str, str | None] = {}
    for etype, name in parts:
        out[etype] = name
    return out


def java_entity_order(entities: Iterable[dict[str, str | None]]) -> list[tuple[tuple[str, str | None], ...]]:
    """Entities (as sorted item tuples, duplicates dropped) in the order Kafka's HashMap of
    ClientQuotaEntity iterates them (its hashCode is ``Objects.hash(entries)``)."""
    def hash_code(e: tuple[tuple[str, str | None], ...]) -> int:
        h = (31 + java_map_hash(e)) & 0xFFFFFFFF
        return h - (1 << 32) if h & 0x80000000 else h
    return java_hash_order_by((tuple(sorted(e.items(), key=lambda kv: kv[0])) for e in entities), hash_code)


def entity_string(parts: dict[str, str | None]) -> str:
    """``ClientQuotaEntity.toString()``: ``ClientQuotaEntity(entries={user=alice})``."""
    inner = ", ".join(f"{t}={parts[t]}" if parts[t] is not None else f"{t}=null"
                      for t in java_hash_order(parts, len(parts)))
    return f"ClientQuotaEntity(entries={{{inner}}})"


def is_ip_literal(name: str) -> bool:
    """Whether ``name`` is an IPv4 or IPv6 address (no lookup needed)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def validate_entity(parts: Sequence[tuple[str, str | None]] | dict[str, str | None],
                    resolvable: Callable[[str], bool] = is_ip_literal) -> Entity:
    """Kafka 4.1's checks of an AlterClientQuotas entity (ClientQuotaControlManager's
    validateEntity, then configKeysForEntityType); raises :class:`QuotaError`.
    ``resolvable`` says whether an ip entity's name is an address or a host that resolves."""
    parts = parts if isinstance(parts, dict) else entity_map(parts)
    if not parts:
        raise QuotaError("Invalid empty client quota entity")
    for etype in java_hash_order(parts, len(parts)):
        name = parts[etype]
        if etype not in ENTITY_TYPES:
            raise QuotaError(f"Unhandled client quota entity type: {etype}")
        if name is not None and not name:
            raise QuotaError(f"Empty {etype} not supported")
    if IP in parts:
        if len(parts) > 1:
            # Kafka's message, its missing space included.
            raise QuotaError("Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId")
        name = parts[IP]
        if name is not None and not resolvable(name):
            raise QuotaError(f"{name} is not a valid IP or resolvable host.")
    # Addresses in their canonical form, as the connection's peer address is compared with it.
    return entity((t, str(ipaddress.ip_address(n)) if t == IP and n is not None and is_ip_literal(n) else n)
                  for t, n in parts.items())


def keys_for(e: Entity) -> dict[str, bool]:
    """The quota keys an entity takes."""
    return IP_QUOTA_KEYS if e and e[0][0] == IP else CLIENT_QUOTA_KEYS


def validate_value(e: Entity, key: str, value: float) -> None:
    """Kafka 4.1's checks of one quota value for an entity (validateQuotaKeyValue); raises
    :class:`QuotaError`. As Kafka's, NaN passes every check."""
    keys = keys_for(e)
    if key not in keys:
        raise QuotaError(f"Invalid configuration key {key}")
    if value <= 0.0:
        raise QuotaError(f"Quota {key} must be greater than 0")
    if keys[key]:
        if key == CONNECTION_CREATION_RATE and value > _INT_MAX:
            raise QuotaError(f"Proposed value for {key} is too large for an INT.")
        if key != CONNECTION_CREATION_RATE and value > 2**63 - 1:
            raise QuotaError(f"Proposed value for {key} is too large for a LONG.")
        if abs(math.fmod(value, 1.0)) > 1e-6:
            raise QuotaError(f"{key} cannot be a fractional value.")


@dataclass(frozen=True)
class FilterComponent:
    """One DescribeClientQuotas filter component."""

    entity_type: str
    match_type: int
    match: str | None

    def matches(self, name: str | None) -> bool:
        if self.match_type == MATCH_EXACT:
            return name == self.match
        if self.match_type == MATCH_DEFAULT:
            return name is None
        # MATCH_TYPE_SPECIFIED: as Kafka 4.1's describe, any entity having the type, its
        # default included.
        return True


def validate_filter(components: Sequence[FilterComponent]) -> None:
    """Kafka's checks of a DescribeClientQuotas filter; raises :class:`QuotaError`."""
    seen: set[str] = set()
    for c in components:
        if c.entity_type not in ENTITY_TYPES:
            raise QuotaUnsupported(f"Unsupported entity type {c.entity_type}")
        if c.entity_type in seen:
            raise QuotaError(f"Entity type {c.entity_type} cannot appear more than once in the filter.")
        seen.add(c.entity_type)
        if c.match_type == MATCH_EXACT and c.match is None:
            raise QuotaError("Request specified MATCH_TYPE_EXACT, but set match string to null.")
        if c.match_type == MATCH_DEFAULT and c.match is not None:
            raise QuotaError("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")
        if c.match_type == MATCH_SPECIFIED and c.match is not None:
            raise QuotaError("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")
        if c.match_type not in (MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED):
            raise QuotaError(f"Unknown match type {c.match_type}")
    if IP in seen and len(seen) > 1:
        raise QuotaError("Invalid entity filter component combination. IP filter component should not be used "
                         "with user or clientId filter component.")


# -- configs and the manager -----------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """A quota in force for one (user, client id): its limit and the measure it shares."""

    limit: float
    sensor: tuple[str, str, str]


class QuotaManager:
    """Quota configs (durable) and the rates measured against them.

    ``enabled`` is False while no user/client-id quota is set: the request path then
    checks that one flag and nothing else.
    """

    def __init__(self, store: StateStore, clock: Clock, *, samples: int = 11, window_seconds: int = 1,
                 controller_samples: int = 11, controller_window_seconds: int = 1) -> None:
        self._store = store
        self._clock = clock
        self.samples = samples
        self.window_ms = window_seconds * 1000
        self.controller_samples = controller_samples
        self.controller_window_ms = controller_window_seconds * 1000
        self._configs: dict[Entity, dict[str, float]] = {}
        self._resolved: dict[tuple[str, str, str], _Resolved | None] = {}
        self._rates: dict[tuple[str, str, str], SampledRate] = {}
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        #: Measures kept before the idle ones are looked for (see _expire).
        self._expire_at = _MAX_SENSORS
        self._lock = anyio.Lock()
        #: Whether any user/client-id quota is set.
        self.enabled = False
        self._load()

    @classmethod
    def from_config(cls, store: StateStore, clock: Clock, config: Any) -> QuotaManager:
        """A manager with the broker's ``quota.window.*`` and ``controller.quota.window.*``."""
        return cls(store, clock, samples=int(config.get("quota.window.num")),
                   window_seconds=int(config.get("quota.window.size.seconds")),
                   controller_samples=int(config.get("controller.quota.window.num")),
                   controller_window_seconds=int(config.get("controller.quota.window.size.seconds")))

    # -- configs

    def _load(self) -> None:
        doc = self._store.load(STORE_KIND)
        configs: dict[Entity, dict[str, float]] = {}
        for item in doc or []:
            e = entity((str(t), None if n is None else str(n)) for t, n in item["entity"])
            configs[e] = {str(k): float(v) for k, v in item["values"].items()}
        self._install(configs)

    def reload(self) -> None:
        """Take the stored quota configs again (another broker of the cluster changed them)."""
        self._load()

    @staticmethod
    def _document(configs: Mapping[Entity, Mapping[str, float]]) -> list[dict[str, Any]]:
        return [{"entity": [list(p) for p in e], "values": dict(v)} for e, v in sorted(
            configs.items(), key=lambda kv: [(t, n or "") for t, n in kv[0]]) if v]

    def _install(self, configs: dict[Entity, dict[str, float]]) -> None:
        self._configs = {e: v for e, v in configs.items() if v}
        self._resolved.clear()
        self.enabled = any(e[0][0] != IP for e in self._configs)

    def configs(self) -> dict[Entity, dict[str, float]]:
        """Every entity with quotas set, and its quotas (a copy)."""
        return {e: dict(v) for e, v in self._configs.items()}

    def describe(self, components: Sequence[FilterComponent], strict: bool) -> list[tuple[Entity, dict[str, float]]]:
        """The entities a DescribeClientQuotas filter matches, with their quotas."""
        validate_filter(components)
        out = []
        for e, values in self._configs.items():
            names = dict(e)
            if strict and set(names) != {c.entity_type for c in components}:
                continue
            if all(c.entity_type in names and c.matches(names[c.entity_type]) for c in components):
                out.append((e, dict(values)))
        return out

    async def alter(self, alterations: Sequence[tuple[Entity, Mapping[str, float | None]]],
                    validate_only: bool = False) -> None:
        """Apply validated alterations (``None`` removes a key): saved (off the event loop)
        before they take effect."""
        if validate_only or not alterations:
            return
        async with self._lock:
            configs = self.configs()
            for e, ops in alterations:
                values = configs.setdefault(e, {})
                for key, value in ops.items():
                    if value is None:
                        values.pop(key, None)
                    else:
                        values[key] = float(value)
                if not values:
                    del configs[e]
            # Sorting and writing thousands of entities is done off the event loop.
            await anyio.to_thread.run_sync(lambda: self._store.save(STORE_KIND, self._document(configs)))
            self._install(configs)

    # -- resolution

    def _resolve(self, user: str, client_id: str, key: str) -> _Resolved | None:
        cache_key = (user, client_id, key)
        try:
            return self._resolved[cache_key]
        except KeyError:
            pass
        configs = self._configs
        U, C = USER, CLIENT_ID
        # Kafka's precedence; the sensor names the matched entity with defaults made actual.
        order: list[tuple[Entity, tuple[str, str]]] = [
            (((C, client_id), (U, user)), (user, client_id)),
            (((C, None), (U, user)), (user, client_id)),
            (((U, user),), (user, "")),
            (((C, client_id), (U, None)), (user, client_id)),
            (((C, None), (U, None)), (user, client_id)),
            (((U, None),), (user, "")),
            (((C, client_id),), ("", client_id)),
            (((C, None),), ("", client_id)),
        ]
        found: _Resolved | None = None
        for e, (u, c) in order:
            values = configs.get(e)
            if values is not None and key in values:
                found = _Resolved(values[key], (key, u, c))
                break
        if len(self._resolved) > 100_000:  # many client ids over time: keep the cache bounded
            self._resolved.clear()
        self._resolved[cache_key] = found
        return found

    def limit(self, principal: str, client_id: str | None, key: str) -> float | None:
        """The quota ``key`` in force for a client, or None when it has none."""
        r = self._resolve(user_name(principal), client_id or "", key)
        return None if r is None else r.limit

    def record(self, principal: str, client_id: str | None, key: str, value: float) -> int:
        """Record ``value`` against the client's ``key`` quota; the throttle time in ms
        (0 within the quota or without one)."""
        r = self._resolve(user_name(principal), client_id or "", key)
        if r is None:
            return 0
        rate = self._rates.get(r.sensor)
        if rate is None:
            if len(self._rates) >= self._expire_at:  # client ids come and go: drop the idle measures
                self._expire(self._rates)
            rate = self._rates[r.sensor] = SampledRate(self.samples, self.window_ms)
        now = self._clock.time_ms()
        rate.record(value, now)
        throttle = rate.throttle_ms(r.limit, now)
        if key == REQUEST_PERCENTAGE:
            throttle = min(throttle, self.window_ms)  # Kafka bounds the request quota's delay
        return throttle

    def _expire(self, rates: dict[tuple[str, str, str], SampledRate]) -> None:
        """Drop the measures with nothing left in their window (Kafka expires idle sensors)."""
        now = self._clock.time_ms()
        for key in [k for k, rate in rates.items() if rate.measure(now) == 0]:
            del rates[key]
        # Scanning every measure for each new client id would cost the event loop milliseconds
        # per request once that many are active: look again only once there are twice as many.
        self._expire_at = max(_MAX_SENSORS, 2 * len(rates))

    def unrecord(self, principal: str, client_id: str | None, key: str, value: float) -> None:
        """Take back a recorded value (a throttled fetch sends nothing)."""
        r = self._resolve(user_name(principal), client_id or "", key)
        rate = None if r is None else self._rates.get(r.sensor)
        if rate is not None:
            rate.record(-value, self._clock.time_ms())

    def max_value_in_window(self, principal: str, client_id: str | None, key: str) -> float | None:
        """The most one request may record without certain throttling (Kafka caps a
        fetch's size with it): ``quota * (samples - 1) * window``."""
        r = self._resolve(user_name(principal), client_id or "", key)
        if r is None:
            return None
        return r.limit * (self.samples - 1) * self.window_ms / 1000

    def mutation_quota(self, principal: str, client_id: str | None, strict: bool) -> MutationQuota | None:
        """The ``controller_mutation_rate`` quota for one request, or None without one."""
        if not self.enabled:
            return None
        r = self._resolve(user_name(principal), client_id or "", CONTROLLER_MUTATION_RATE)
        if r is None:
            return None
        bucket = self._buckets.get(r.sensor)
        if bucket is None:
            if len(self._buckets) >= _MAX_SENSORS:
                self._buckets.clear()
            bucket = self._buckets[r.sensor] = TokenBucket(self.controller_samples, self.controller_window_ms)
        return MutationQuota(bucket, r.limit, self._clock, strict)

    def ip_connection_rate(self, host: str) -> float | None:
        """The ``connection_creation_rate`` in force for a client address, or None."""
        configs = self._configs
        for e in (((IP, host),), ((IP, None),)):
            values = configs.get(e)
            if values is not None and CONNECTION_CREATION_RATE in values:
                return values[CONNECTION_CREATION_RATE]
        return None
