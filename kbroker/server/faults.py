"""Fault injection: rules that make the broker misbehave on purpose, so a test can see how
a client copes with an error, a slow answer, a closed connection or a lost response.

A rule matches requests of one API (by name or key), optionally only those naming a topic
(and a partition of it) or sent by a client id, and does one thing to each of the next
``count`` of them (0: every one until removed), until ``ttl_ms`` has passed:

- ``error``: answer with a Kafka error code, as Kafka answers a request that failed as a
  whole (:func:`~kbroker.server.error_response.error_response`); the request is not applied.
  An acks=0 produce, which gets no answer, has its connection closed instead, as Kafka does.
- ``latency``: wait ``ms`` milliseconds, then serve the request.
- ``close_before``: close the connection without applying the request.
- ``close_after``: apply the request, then close the connection instead of answering.
- ``drop_response``: apply the request and send no answer (the client's request times out).
- ``throttle``: serve it, answer with ``throttle_time_ms`` = ``ms`` and read nothing more from
  the connection for that long, as a client quota does (KIP-219).

The first live rule that matches a request applies (rules are tried in the order they were
added). A rule naming a topic applies to the whole request that names it, except an ``error``
on Produce: there only that topic's (or partition's) entries fail and the rest is applied. Rules change
from any thread while the event loop serves (``BrokerThread.faults`` from a test's own
thread), and over HTTP when ``faults.port`` is set: ``GET /faults`` lists the rules,
``POST /faults`` adds one (its JSON as :meth:`FaultInjector.add` takes it) and answers its
id, ``DELETE /faults/{id}`` removes one and ``DELETE /faults`` removes them all.

The injector is in the request path only while it holds a rule or serves HTTP. The rule a
request met is noted in ``exchange.notes["fault"]`` (its id) for the interceptors outside.
Latency and throttle times are real time, whatever the broker's clock; ``ttl_ms`` runs on it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from kbroker.clock import Clock
from kbroker.codec.apis import api_by_name, api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.handlers.api import CloseConnection, EncodedBody
from kbroker.server.error_response import error_response
from kbroker.server.intercept import Body, Exchange, Handle, Interceptors

log = logging.getLogger(__name__)

#: What a rule can do to a request it matches.
ACTIONS = ("error", "latency", "close_before", "close_after", "drop_response", "throttle")
#: Keys a rule's JSON may have.
_RULE_KEYS = frozenset({"api", "action", "error", "ms", "topic", "partition", "client_id", "count", "ttl_ms"})
#: Names of a topic in a request struct, and of a partition index.
_TOPIC_FIELDS = ("name", "topic", "topic_name")
_PARTITION_FIELDS = ("partition_index", "partition", "index", "partition_id")
_PRODUCE = 0
#: The largest ``ms``, ``ttl_ms`` and ``partition``: Kafka's ``throttle_time_ms`` and partition
#: indexes are int32 (a larger throttle cannot be answered), ~24.8 days is longer than any test.
_MAX_INT32 = 2**31 - 1
#: Live rules one injector holds: each request is matched against them, and a client of the
#: HTTP endpoint must not be able to grow the list without end.
MAX_RULES = 10000
#: Spent or expired rules kept for listing (their ``fired`` count); older ones are forgotten.
MAX_ENDED = 1000
#: The largest JSON body ``POST /faults`` reads (a rule is a few hundred bytes).
MAX_HTTP_BODY = 64 * 1024


class FaultRuleError(ValueError):
    """A rule that cannot be added (unknown API, action or error code, a bad value); the message says which."""


@dataclass
class FaultRule:
    """One rule: what it matches, what it does, and how often it fired."""

    id: int
    api_key: int
    action: str
    error_code: int = 0
    ms: int = 0
    topic: str | None = None
    partition: int | None = None
    client_id: str | None = None
    #: Requests it still applies to (its ``count``); None: every match until removed.
    remaining: int | None = 1
    #: ``clock.monotonic()`` after which it no longer applies (None: never).
    expires: float | None = None
    ttl_ms: int | None = None
    count: int = 1
    fired: int = 0
    #: Set once it can no longer fire: "exhausted" (count spent) or "expired" (ttl passed).
    ended: str | None = field(default=None)

    def as_json(self) -> dict[str, Any]:
        """The rule as ``GET /faults`` lists it."""
        out: dict[str, Any] = {"id": self.id, "api": api_table()[self.api_key].name, "api_key": self.api_key,
                               "action": self.action}
        if self.action == "error":
            out["error"] = _error_name(self.error_code)
            out["error_code"] = self.error_code
        if self.action in ("latency", "throttle"):
            out["ms"] = self.ms
        for name in ("topic", "partition", "client_id", "ttl_ms"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(count=self.count, fired=self.fired, state=self.ended or "active")
        return out


class FaultInjector:
    """The interceptor holding the fault rules (the broker's ``faults``).

    ``topic_name`` resolves a topic id (requests from Fetch v13 name topics by id) for
    rules naming a topic. Every method but the interceptor call itself is thread-safe.
    """

    def __init__(self, interceptors: Interceptors, clock: Clock,
                 topic_name: Callable[[uuid.UUID], str | None] = lambda _: None) -> None:
        self._interceptors = interceptors
        self._clock = clock
        self._topic_name = topic_name
        self._lock = threading.Lock()
        self._install_lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._installed = False
        self._serving_http = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: Any = None
        #: Set by :meth:`stop`: latency rules stop waiting, so a shutdown is not held up by them.
        self._stopped: anyio.Event | None = None

    # -- rules -----------------------------------------------------------------------------------
    def add(self, api: str | int, action: str = "error", *, error: str | int | None = None, ms: int = 0,
            topic: str | None = None, partition: int | None = None, client_id: str | None = None,
            count: int = 1, ttl_ms: int | None = None) -> int:
        """Add a rule and return its id. ``api``: an API name (``"Produce"``) or key; ``action``:
        one of :data:`ACTIONS`; ``error``: the error's name (``"NOT_LEADER_OR_FOLLOWER"``) or code,
        for ``error``; ``ms``: for ``latency`` and ``throttle``; ``count``: how many matching
        requests it applies to (0: all, until removed); ``ttl_ms``: how long it lives.
        Raises :class:`FaultRuleError` for a rule that makes no sense."""
        rule = self._build(api, action, error, ms, topic, partition, client_id, count, ttl_ms)
        with self._lock:
            now = self._clock.monotonic()
            live = [r for r in self._rules if r.ended is None and not _expire(r, now)]
            if len(live) >= MAX_RULES:
                raise FaultRuleError(f"too many rules ({MAX_RULES} live): remove some first")
            ended = [r for r in self._rules if r.ended is not None]
            if len(ended) > MAX_ENDED:  # forget the oldest spent rules, keep the order of the rest
                forget = {id(r) for r in ended[:len(ended) - MAX_ENDED]}
                self._rules = [r for r in self._rules if id(r) not in forget]
            self._rules.append(rule)
        self._sync_installed()
        return rule.id

    def add_json(self, spec: Mapping[str, Any]) -> int:
        """Add a rule given as JSON (the keys of :meth:`add`); :class:`FaultRuleError` when it is wrong."""
        if not isinstance(spec, Mapping):
            raise FaultRuleError("a rule is a JSON object")
        unknown = sorted(set(spec) - _RULE_KEYS)
        if unknown:
            raise FaultRuleError(f"unknown rule keys {unknown}; known: {sorted(_RULE_KEYS)}")
        if "api" not in spec:
            raise FaultRuleError("a rule needs an 'api' (its name, e.g. Produce, or its key)")
        return self.add(spec["api"], spec.get("action", "error"), error=spec.get("error"), ms=spec.get("ms", 0),
                        topic=spec.get("topic"), partition=spec.get("partition"), client_id=spec.get("client_id"),
                        count=spec.get("count", 1), ttl_ms=spec.get("ttl_ms"))

    def rules(self) -> list[dict[str, Any]]:
        """Every rule (those spent or expired too, with their ``state``), as JSON, oldest first."""
        with self._lock:
            now = self._clock.monotonic()
            for rule in self._rules:
                _expire(rule, now)
            return [rule.as_json() for rule in self._rules]

    def rule(self, rule_id: int) -> dict[str, Any] | None:
        """One rule as JSON (None when there is no such rule)."""
        return next((r for r in self.rules() if r["id"] == rule_id), None)

    def fired(self, rule_id: int) -> int:
        """How many requests rule ``rule_id`` applied to; KeyError when there is no such rule."""
        found = self.rule(rule_id)
        if found is None:
            raise KeyError(rule_id)
        return int(found["fired"])

    def remove(self, rule_id: int) -> bool:
        """Remove one rule; False when there was none with that id."""
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
        self._sync_installed()
        return removed

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        with self._lock:
            n, self._rules = len(self._rules), []
        self._sync_installed()
        return n

    def _build(self, api: str | int, action: str, error: str | int | None, ms: int, topic: str | None,
               partition: int | None, client_id: str | None, count: int, ttl_ms: int | None) -> FaultRule:
        api_key = _api_key(api)
        if action not in ACTIONS:
            raise FaultRuleError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        code = 0
        if action == "error":
            if error is None:
                raise FaultRuleError("an 'error' rule needs an error (its name, e.g. NOT_LEADER_OR_FOLLOWER, or code)")
            code = _error_code(error)
            if code == 0:
                raise FaultRuleError("an 'error' rule needs an error code other than NONE (0)")
        elif error is not None:
            raise FaultRuleError(f"'error' is for the error action, not {action!r}")
        for name, value in (("ms", ms), ("count", count)):
            if not _is_int(value) or value < 0:
                raise FaultRuleError(f"{name} must be a whole number, at least 0 (got {value!r})")
        if ms > _MAX_INT32:
            raise FaultRuleError(f"ms must be at most {_MAX_INT32} (got {ms})")
        if action in ("latency", "throttle") and ms <= 0:
            raise FaultRuleError(f"a {action} rule needs ms > 0")
        if ttl_ms is not None and (not _is_int(ttl_ms) or not 0 < ttl_ms <= _MAX_INT32):
            raise FaultRuleError(f"ttl_ms must be a whole number from 1 to {_MAX_INT32} (got {ttl_ms!r})")
        if partition is not None and (not _is_int(partition) or not 0 <= partition <= _MAX_INT32 or topic is None):
            raise FaultRuleError("partition must be an index, at least 0, with a topic")
        for name, text in (("topic", topic), ("client_id", client_id)):
            if text is not None and not isinstance(text, str):
                raise FaultRuleError(f"{name} must be a string")
        expires = None if ttl_ms is None else self._clock.monotonic() + ttl_ms / 1000
        return FaultRule(next(self._ids), api_key, action, code, ms, topic, partition, client_id,
                         remaining=count or None, expires=expires, ttl_ms=ttl_ms, count=count)

    # -- serving ---------------------------------------------------------------------------------
    async def __call__(self, exchange: Exchange, handle: Handle) -> Body:
        rule = self._take(exchange)
        if rule is None:
            return await handle()
        exchange.notes["fault"] = rule.id
        action = rule.action
        if action == "error":
            if exchange.api_key == _PRODUCE and exchange.request.get("acks") == 0:
                # As Kafka: a producer that wants no answer learns of an error by losing the connection.
                raise CloseConnection(f"fault rule {rule.id}: an acks=0 produce failed")
            if exchange.api_key == _PRODUCE and rule.topic is not None:
                return await self._fail_partitions(exchange, handle, rule)
            return error_response(exchange.api_key, exchange.api_version, exchange.request, rule.error_code)
        if action == "latency":
            stopped = self._stopped
            if stopped is None:
                await anyio.sleep(rule.ms / 1000)
            else:
                with anyio.move_on_after(rule.ms / 1000):
                    await stopped.wait()
                if stopped.is_set():  # the broker stops: the request is not served, as any unserved one
                    raise CloseConnection(f"fault rule {rule.id}: the broker stopped during the injected latency")
            return await handle()
        if action == "close_before":
            raise CloseConnection(f"fault rule {rule.id}: connection closed before serving the request")
        body = await handle()
        if action == "close_after":
            raise CloseConnection(f"fault rule {rule.id}: connection closed after serving the request")
        if action == "drop_response":
            return None
        # throttle: as a client quota, the answer says how long and the connection is muted that long.
        exchange.session.throttle_ms = max(exchange.session.throttle_ms, rule.ms)
        if body is not None and "throttle_time_ms" in body:
            body = dict(body) if isinstance(body, EncodedBody) else body
            body["throttle_time_ms"] = max(int(body["throttle_time_ms"]), rule.ms)
        return body

    async def _fail_partitions(self, exchange: Exchange, handle: Handle, rule: FaultRule) -> Body:
        """A Produce naming the rule's topic (or partition) among others: those partitions fail
        and the others are applied, as partitions are in Kafka, each on its own."""
        request, version = exchange.request, exchange.api_version
        original = request["topic_data"]
        kept: list[Any] = []
        failed: list[Any] = []
        for td in original:
            name = td["name"] if version < 13 else self._topic_name(td["topic_id"])
            if name != rule.topic:
                kept.append(td)
                continue
            hit = [pd for pd in td["partition_data"] if rule.partition is None or pd["index"] == rule.partition]
            rest = [pd for pd in td["partition_data"] if not (rule.partition is None or pd["index"] == rule.partition)]
            failed.append(dict(td, partition_data=hit))
            if rest:
                kept.append(dict(td, partition_data=rest))
        if not kept:
            return error_response(_PRODUCE, version, request, rule.error_code)
        request["topic_data"] = kept  # the handler reads the same body
        try:
            body = await handle()
        finally:
            request["topic_data"] = original
        if body is None:
            return None
        refused = error_response(_PRODUCE, version, {"topic_data": failed}, rule.error_code)["responses"]
        responses = [dict(r) for r in body["responses"]]
        key = "name" if version < 13 else "topic_id"
        for entry in refused:
            same = next((r for r in responses if r.get(key) == entry.get(key)), None)
            if same is None:
                responses.append(entry)
            else:
                same["partition_responses"] = [*same["partition_responses"], *entry["partition_responses"]]
        return dict(body, responses=responses)

    def _take(self, exchange: Exchange) -> FaultRule | None:
        """The first live rule matching the request, its count taken; None when none does."""
        named: set[tuple[str | None, int | None]] | None = None
        with self._lock:
            if not self._rules:
                return None
            now = self._clock.monotonic()
            for rule in self._rules:
                if rule.ended is not None or rule.api_key != exchange.api_key or _expire(rule, now):
                    continue
                if rule.client_id is not None and rule.client_id != exchange.client_id:
                    continue
                if rule.topic is not None:
                    if named is None:
                        named = set(_named_partitions(exchange.request, self._topic_name))
                    if not any(t == rule.topic and (rule.partition is None or p == rule.partition)
                               for t, p in named):
                        continue
                rule.fired += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        rule.ended = "exhausted"
                return rule
        return None

    # -- installation and HTTP -------------------------------------------------------------------
    async def start(self, tg: TaskGroup, host: str, port: int | None) -> None:
        """Called on the broker's loop once it serves: rules added from other threads from now
        on are installed through the loop; with ``port`` set, serve the HTTP endpoint
        (OSError when the port is taken)."""
        self._loop = asyncio.get_running_loop()
        self._stopped = anyio.Event()
        if port is None:
            return
        from kbroker.server.http import HttpEndpoint

        self._endpoint = HttpEndpoint(host, port, self.routes())
        await self._endpoint.start(tg)
        log.info("fault rules served on http://%s:%d/faults", host, self._endpoint.port)
        self._serving_http = True
        self._sync_installed()

    @property
    def http_port(self) -> int | None:
        """The port the HTTP endpoint listens on (None without one)."""
        return None if self._endpoint is None else int(self._endpoint.port)

    async def stop(self) -> None:
        """Stop the HTTP endpoint and end the waits of latency rules (rules stay)."""
        if self._stopped is not None:
            self._stopped.set()
        if self._endpoint is not None:
            await self._endpoint.stop()
        self._serving_http = False
        self._loop = None
        self._apply_installed()

    def _sync_installed(self) -> None:
        """Put the injector in the request path while it has rules or an endpoint, and only then;
        from another thread, through the loop, so the change is made before this returns."""
        loop = self._loop
        if loop is None or _running_loop() is loop or not loop.is_running():
            self._apply_installed()
            return
        done = threading.Event()

        def apply() -> None:
            try:
                self._apply_installed()
            finally:
                done.set()

        loop.call_soon_threadsafe(apply)
        if not done.wait(10):
            raise RuntimeError("the broker's event loop did not install the fault rules in 10 s")

    def _apply_installed(self) -> None:
        # One thread at a time: two that both saw it missing would install it twice (before
        # the loop runs, threads apply this directly), and every request would pass it twice.
        with self._install_lock:
            with self._lock:
                wanted = bool(self._rules) or self._serving_http
            if wanted and not self._installed:
                self._interceptors.add(self)
            elif not wanted and self._installed:
                self._interceptors.remove(self)
            self._installed = wanted

    def routes(self) -> list[Any]:
        """The Starlette routes of ``/faults``."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def listing(_: Request) -> Response:
            return JSONResponse({"rules": self.rules()})

        async def add(request: Request) -> Response:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_HTTP_BODY:
                    return JSONResponse({"error": f"a rule is at most {MAX_HTTP_BODY} bytes"}, status_code=413)
            try:
                spec = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
                return JSONResponse({"error": "the body is not JSON"}, status_code=400)
            try:
                rule_id = self.add_json(spec)
            except FaultRuleError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            return JSONResponse({"id": rule_id, "rule": self.rule(rule_id)}, status_code=201)

        async def clear(_: Request) -> Response:
            return JSONResponse({"removed": self.clear()})

        async def remove(request: Request) -> Response:
            rule_id = request.path_params["rule_id"]
            if not self.remove(rule_id):
                return JSONResponse({"error": f"no rule {rule_id}"}, status_code=404)
            return JSONResponse({"removed": 1})

        async def one(request: Request) -> Response:
            found = self.rule(request.path_params["rule_id"])
            if found is None:
                return JSONResponse({"error": f"no rule {request.path_params['rule_id']}"}, status_code=404)
            return JSONResponse(found)

        return [Route("/faults", listing, methods=["GET"]), Route("/faults", add, methods=["POST"]),
                Route("/faults", clear, methods=["DELETE"]),
                Route("/faults/{rule_id:int}", one, methods=["GET"]),
                Route("/faults/{rule_id:int}", remove, methods=["DELETE"])]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _expire(rule: FaultRule, now: float) -> bool:
    """Mark ``rule`` expired when its time is up; whether it is."""
    if rule.ended is None and rule.expires is not None and now >= rule.expires:
        rule.ended = "expired"
    return rule.ended == "expired"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(text: str) -> int:
    """A number given as text; FaultRuleError when Python will not read it (thousands of digits)."""
    try:
        return int(text)
    except ValueError:
        raise FaultRuleError(f"not a number: {text[:20]!r}...") from None


def _api_key(api: str | int) -> int:
    if _is_int(api):
        assert isinstance(api, int)
        if api not in api_table():
            raise FaultRuleError(f"no API with key {api}")
        return api
    if isinstance(api, str):
        if api.strip().isdigit():
            return _api_key(_int(api))
        try:
            return api_by_name(api).key
        except KeyError:
            pass
        for known in api_table().values():  # "produce", "offset_commit": any case, with or without _
            if known.name.lower() == api.replace("_", "").lower():
                return known.key
    raise FaultRuleError(f"unknown API {api!r} (a name such as Produce or Fetch, or an API key)")


def _error_code(error: str | int) -> int:
    if _is_int(error):
        assert isinstance(error, int)
        try:
            return int(ErrorCode(error))
        except ValueError:
            raise FaultRuleError(f"no Kafka error code {error}") from None
    if isinstance(error, str):
        name = error.strip().upper()
        if name.lstrip("-").isdigit():
            return _error_code(_int(name))
        if name in ErrorCode.__members__:
            return int(ErrorCode[name])
    raise FaultRuleError(f"unknown Kafka error {error!r} (a name such as NOT_LEADER_OR_FOLLOWER, or a code)")


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _named_partitions(body: Any, topic_name: Callable[[uuid.UUID], str | None],
                      ) -> Iterator[tuple[str | None, int | None]]:
    """Every (topic, partition) a request names, partition None where it names a topic alone."""
    if not isinstance(body, Mapping):
        return
    for attr, value in body.items():
        if not isinstance(value, list) or "topic" not in attr:
            continue
        for item in value:
            if isinstance(item, str):  # DeleteTopics' names, say
                yield item, None
            elif isinstance(item, Mapping):
                yield from _topic_entry(item, topic_name)
    # Groups that name topics below them (OffsetFetch v8+): one level down.
    for attr, value in body.items():
        if isinstance(value, list) and "topic" not in attr:
            for item in value:
                if isinstance(item, Mapping) and any(isinstance(v, list) and "topic" in k for k, v in item.items()):
                    yield from _named_partitions(item, topic_name)


def _topic_entry(item: Mapping[str, Any], topic_name: Callable[[uuid.UUID], str | None],
                 ) -> Iterator[tuple[str | None, int | None]]:
    """The (topic, partition) pairs of one topic entry of a request."""
    name = next((item[f] for f in _TOPIC_FIELDS if isinstance(item.get(f), str) and item.get(f)), None)
    if name is None and isinstance(item.get("topic_id"), uuid.UUID):
        name = topic_name(item["topic_id"])
    if name is None:
        return
    yield name, None
    for attr, value in item.items():
        if not isinstance(value, list) or "partition" not in attr:
            continue
        for p in value:
            if _is_int(p):
                yield name, p
            elif isinstance(p, Mapping):
                index = next((p[f] for f in _PARTITION_FIELDS if _is_int(p.get(f))), None)
                if index is not None:
                    yield name, index
