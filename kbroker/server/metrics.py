"""Prometheus metrics and a health check, served over HTTP on ``metrics.port``.

Each broker has its own registry (several brokers may share a process, in tests). What the
request path counts, an interceptor counts: requests and error codes per API and version,
latency per API, record bytes in and out per topic and records in per topic. What describes
the broker's state (partitions, log sizes, connections, consumer group lag) is read when
Prometheus scrapes, through the callables of :class:`MetricsSources`, so serving pays nothing
for it. The names follow Prometheus' conventions; where Kafka has a JMX metric for the same
figure, the help text names it.

This module imports prometheus_client and Starlette: the broker imports it only when
``metrics.port`` is set.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from typing import Any

from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kbroker.codec.apis import api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.schema import FieldSpec
from kbroker.handlers.api import CloseConnection
from kbroker.server.http import HttpEndpoint
from kbroker.server.intercept import Body, Exchange, Handle

log = logging.getLogger(__name__)

PRODUCE_KEY = 0
FETCH_KEY = 1
#: Latency buckets, in seconds: a local broker answers most requests within a millisecond,
#: long polls and group joins take up to their timeouts.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Most consumer group lag series one scrape reports (one per group and partition): a broker
#: with very many groups and partitions still answers a scrape quickly. The rest are counted
#: in ``kbroker_consumer_group_lag_omitted``.
MAX_LAG_SERIES = 10_000

# A v2 record batch: its length at byte 8 (after the base offset), its magic at 16 and its
# record count at 57; a batch spans 12 bytes (offset and length) more than its length.
_INT32 = struct.Struct(">i")
_LENGTH_AT, _MAGIC_AT, _COUNT_AT, _BATCH_HEADER = 8, 16, 57, 61


@dataclass(frozen=True, slots=True)
class GroupOffset:
    """A consumer group's committed offset of one partition."""

    group: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class MetricsSources:
    """What the metrics read from the broker when scraped (and to name topics by id)."""

    #: Node id (the health check reports it).
    node_id: int
    #: ``"starting"``, ``"serving"`` or ``"stopping"``.
    status: Callable[[], str]
    #: ``(topic, partition, size in bytes, is leader here)`` for every partition hosted here.
    partitions: Callable[[], Iterable[tuple[str, int, int, bool]]]
    #: Open client connections, by listener name.
    connections: Callable[[], Mapping[str, int]]
    #: Every committed offset of the groups this broker coordinates.
    committed_offsets: Callable[[], Iterable[GroupOffset]]
    #: A partition's high watermark, None when it is not hosted here.
    high_watermark: Callable[[str, int], int | None]
    #: A topic's name from its id (Produce v13+ and Fetch v13+ name topics by id).
    topic_name: Callable[[uuid.UUID], str | None]


class BrokerMetrics:
    """One broker's registry, its request interceptor and its HTTP endpoint.

    The request path adds to plain integers (all of it runs on the broker's event loop, as
    the scrape does); :class:`_RequestCollector` turns them into Prometheus counters and
    histograms when scraped. The library's Counter and Histogram take a lock and several
    calls per update: a few microseconds on every request, for nothing a single loop needs.
    """

    def __init__(self, sources: MetricsSources, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sources = sources
        self.host = host
        self.requested_port = port
        #: Per API key: its name, served requests by version, latency bucket counts and sum.
        self.apis: dict[int, _ApiStats] = {}
        #: Error codes other than NONE found in responses, by (API key, version, code).
        self.errors: dict[tuple[int, int, int], int] = {}
        #: Record bytes and records appended by Produce, record bytes fetched by consumers, by topic.
        self.bytes_in: dict[str, int] = {}
        self.messages_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        #: Record bytes fetched by followers.
        self.replication_bytes_out = 0
        self.registry = CollectorRegistry()
        self.registry.register(_RequestCollector(self))
        self.registry.register(_StateCollector(sources))
        # The process' CPU, memory and file descriptors, as the library's default registry has them.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._failed: set[tuple[int, int]] = set()
        self.endpoint: HttpEndpoint | None = None

    # -- the request path --------------------------------------------------------------------
    async def __call__(self, exchange: Exchange, handle: Handle) -> Body:
        """The interceptor: count the request, its error codes, its latency and its record bytes."""
        started = time.perf_counter()
        key, version = exchange.api_key, exchange.api_version
        # Counted once served, as Kafka does: the request count and the latency histogram's agree.
        try:
            body = await handle()
        except CloseConnection:
            self._served(key, version, started)
            raise
        except Exception:
            # Dispatch answers UNKNOWN_SERVER_ERROR (or closes the connection where the API has no
            # top-level error code): counted as the client sees it.
            self._served(key, version, started)
            self._error(key, version, ErrorCode.UNKNOWN_SERVER_ERROR, 1)
            raise
        self._served(key, version, started)
        try:
            # Produce and Fetch, the busiest, find their error codes as they count record bytes.
            if key == PRODUCE_KEY:
                self._produced(exchange.request, body, version)
            elif key == FETCH_KEY:
                if body is not None:
                    self._fetched(exchange.request, body, version)
            elif body is not None:
                found: dict[int, int] = {}
                _error_codes(body, _error_plan(key, version), found)
                for code, n in found.items():
                    self._error(key, version, code, n)
        except Exception:  # counting must never fail the request: said once per API and version
            if (key, version) not in self._failed:
                self._failed.add((key, version))
                log.exception("cannot count the response to API key %d v%d in the metrics", key, version)
        return body

    def _served(self, key: int, version: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        stats = self.apis.get(key)
        if stats is None:
            stats = self.apis[key] = _ApiStats(key)
        stats.served[version] = stats.served.get(version, 0) + 1
        stats.buckets[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        stats.seconds += elapsed

    def _error(self, key: int, version: int, code: int, n: int) -> None:
        self.errors[(key, version, code)] = self.errors.get((key, version, code), 0) + n

    def topic_deleted(self, topic: str) -> None:
        """Drop a deleted topic's series, as Kafka removes its topic metrics (a test suite
        making a topic per test would otherwise make them grow without end)."""
        for counts in (self.bytes_in, self.messages_in, self.bytes_out):
            counts.pop(topic, None)

    def _produced(self, request: Any, body: Body, version: int) -> None:
        """Error codes, and the bytes and records of the partitions appended: those answered
        NONE (acks=0 has no response: had any partition failed, the connection would have been
        closed instead)."""
        by_id = version >= 13
        failed: set[tuple[Any, int]] | None = None
        if body is not None:
            for t in body["responses"]:
                for p in t["partition_responses"]:
                    code = p["error_code"]
                    if code:
                        self._error(PRODUCE_KEY, version, code, 1)
                        if failed is None:
                            failed = set()
                        failed.add((t["topic_id"] if by_id else t["name"], p["index"]))
        bytes_in, messages_in = self.bytes_in, self.messages_in
        for td in request["topic_data"]:
            name: str | None = None
            key = td["topic_id"] if by_id else td["name"]
            for pd in td["partition_data"]:
                records = pd["records"]
                if not records or (failed is not None and (key, pd["index"]) in failed):
                    continue
                if name is None:
                    name = self.sources.topic_name(key) if by_id else key
                    if name is None:
                        break
                bytes_in[name] = bytes_in.get(name, 0) + len(records)
                messages_in[name] = messages_in.get(name, 0) + record_count(records)

    def _fetched(self, request: Any, body: Body, version: int) -> None:
        """Error codes, and record bytes in the response: to consumers by topic, to followers in all."""
        replica_id = request["replica_state"]["replica_id"] if version >= 15 else request.get("replica_id", -1)
        by_id = version >= 13
        follower = replica_id >= 0
        code = body.get("error_code")
        if code:
            self._error(FETCH_KEY, version, code, 1)
        for t in body.get("responses", ()):
            size = 0
            for p in t["partitions"]:
                code = p["error_code"]
                if code:
                    self._error(FETCH_KEY, version, code, 1)
                records = p.get("records")
                if records:
                    size += len(records)
            if not size:
                continue
            if follower:
                self.replication_bytes_out += size
                continue
            name = self.sources.topic_name(t["topic_id"]) if by_id else t["topic"]
            if name is not None:
                self.bytes_out[name] = self.bytes_out.get(name, 0) + size

    # -- HTTP ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound HTTP port (0 before :meth:`start`)."""
        return self.endpoint.port if self.endpoint is not None else 0

    def routes(self) -> list[Route]:
        """``/metrics`` (Prometheus' text format) and ``/health``."""
        return [Route("/metrics", self._metrics, methods=["GET"]),
                Route("/health", self._health, methods=["GET"])]

    async def start(self, tg: TaskGroup) -> None:
        """Serve over HTTP in ``tg`` (OSError when the port is taken)."""
        self.endpoint = HttpEndpoint(self.host, self.requested_port, self.routes())
        await self.endpoint.start(tg)

    async def stop(self) -> None:
        """Stop serving HTTP."""
        if self.endpoint is not None:
            await self.endpoint.stop()

    async def _metrics(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _health(self, _: Request) -> Response:
        # 200 only while serving: a load balancer or orchestrator sends clients elsewhere while
        # the broker loads its groups and transactions, or drains its connections to stop.
        status = self.sources.status()
        body = json.dumps({"status": status, "node_id": self.sources.node_id})
        return Response(body, status_code=200 if status == "serving" else 503, media_type="application/json")


class _ApiStats:
    """One API's served requests by version and latency histogram (bucket counts, not cumulative)."""

    __slots__ = ("buckets", "name", "seconds", "served")

    def __init__(self, key: int) -> None:
        api = api_table().get(key)
        self.name = api.name if api is not None else str(key)
        self.served: dict[int, int] = {}
        #: One count per bucket of LATENCY_BUCKETS, and the last for the ones above them all.
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0


class _RequestCollector(Collector):
    """What the request path counted, as Prometheus counters and histograms."""

    def __init__(self, metrics: BrokerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily(
            "kbroker_requests", "Requests served (counted when answered), by API and version (Kafka: kafka.network "
            "RequestMetrics RequestsPerSec).", labels=["api", "version"])
        latency = HistogramMetricFamily(
            "kbroker_request_duration_seconds", "Time from a request's decoding to its response body, by API "
            "(Kafka: kafka.network RequestMetrics TotalTimeMs, which also counts queueing and sending).",
            labels=["api"])
        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for stats in sorted(m.apis.values(), key=lambda a: a.name):
            for version, n in sorted(stats.served.items()):
                requests.add_metric([stats.name, str(version)], n)
            latency.add_metric([stats.name], list(zip(bounds, accumulate(stats.buckets), strict=True)),
                               stats.seconds)
        yield requests
        yield latency
        errors = CounterMetricFamily(
            "kbroker_request_errors", "Error codes other than NONE in responses, each occurrence counted (a "
            "partition's error, a topic's, the top level's), by API, version and error (Kafka: kafka.network "
            "RequestMetrics ErrorsPerSec).", labels=["api", "version", "error"])
        for (key, version, code), n in sorted(m.errors.items()):
            api = m.apis[key].name if key in m.apis else str(key)
            try:
                error = ErrorCode(code).name
            except ValueError:
                error = str(code)
            errors.add_metric([api, str(version), error], n)
        yield errors
        for name, help_text, counts in (
                ("kbroker_topic_in_bytes", "Record bytes appended by Produce requests, by topic (Kafka: "
                 "kafka.server BrokerTopicMetrics BytesInPerSec).", m.bytes_in),
                ("kbroker_topic_in_messages", "Records appended by Produce requests, by topic (Kafka: kafka.server "
                 "BrokerTopicMetrics MessagesInPerSec).", m.messages_in),
                ("kbroker_topic_out_bytes", "Record bytes sent to consumers in Fetch responses, by topic (Kafka: "
                 "kafka.server BrokerTopicMetrics BytesOutPerSec).", m.bytes_out)):
            family = CounterMetricFamily(name, help_text, labels=["topic"])
            for topic, n in sorted(counts.items()):
                family.add_metric([topic], n)
            yield family
        yield CounterMetricFamily(
            "kbroker_replication_out_bytes", "Record bytes sent to follower brokers in Fetch responses (Kafka: "
            "kafka.server BrokerTopicMetrics ReplicationBytesOutPerSec).", value=m.replication_bytes_out)


class _StateCollector(Collector):
    """Gauges read from the broker at scrape time."""

    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self.sources
        hosted = GaugeMetricFamily("kbroker_partitions", "Partitions hosted on this broker (Kafka: kafka.server "
                                   "ReplicaManager PartitionCount).")
        leading = GaugeMetricFamily("kbroker_leader_partitions", "Partitions this broker leads (Kafka: "
                                    "kafka.server ReplicaManager LeaderCount).")
        size = GaugeMetricFamily("kbroker_log_size_bytes", "Bytes of a topic's log segments on this broker, all "
                                 "its partitions together (Kafka: kafka.log Log Size, per partition).",
                                 labels=["topic"])
        sizes: dict[str, int] = {}
        count = leaders = 0
        for topic, _, nbytes, leader in s.partitions():
            count += 1
            leaders += leader
            sizes[topic] = sizes.get(topic, 0) + nbytes
        hosted.add_metric([], count)
        leading.add_metric([], leaders)
        for topic, nbytes in sorted(sizes.items()):
            size.add_metric([topic], nbytes)
        yield hosted
        yield leading
        yield size
        conns = GaugeMetricFamily("kbroker_connections", "Open client connections, by listener (Kafka: "
                                  "kafka.server socket-server-metrics connection-count).", labels=["listener"])
        for listener, n in sorted(s.connections().items()):
            conns.add_metric([listener], n)
        yield conns
        yield from self._lag()

    def _lag(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "kbroker_consumer_group_lag", "Records of a partition a group has not committed yet: the high "
            "watermark less the committed offset (kafka-consumer-groups' LAG; no broker JMX metric).",
            labels=["group", "topic", "partition"])
        omitted = 0
        series = 0
        for g in self.sources.committed_offsets():
            if series >= MAX_LAG_SERIES:
                omitted += 1
                continue
            hw = self.sources.high_watermark(g.topic, g.partition)
            if hw is None:
                continue  # not hosted here (another broker's partition, or a deleted topic)
            lag.add_metric([g.group, g.topic, str(g.partition)], max(0, hw - g.offset))
            series += 1
        yield lag
        dropped = GaugeMetricFamily(
            "kbroker_consumer_group_lag_omitted", f"Committed partitions left out of kbroker_consumer_group_lag "
            f"(it reports at most {MAX_LAG_SERIES} per scrape).")
        dropped.add_metric([], omitted)
        yield dropped


def record_count(records: bytes | bytearray | memoryview) -> int:
    """Records in a produce payload's v2 batches (a torn tail is not counted)."""
    n = 0
    pos = 0
    end = len(records)
    while end - pos >= _BATCH_HEADER:
        length = _INT32.unpack_from(records, pos + _LENGTH_AT)[0]
        if records[pos + _MAGIC_AT] == 2:
            n += _INT32.unpack_from(records, pos + _COUNT_AT)[0]
        if length <= 0:
            break
        pos += 12 + length
    return n


#: Where a response holds error codes: (error code attributes here, [(attribute, is an array,
#: plan of what it holds)] for the nested structs that hold some).
_Plan = tuple[tuple[str, ...], tuple[tuple[str, bool, "_Plan"], ...]]


@cache
def _error_plan(api_key: int, version: int) -> _Plan:
    """The error code fields of an API's response at ``version``, from its schema."""
    api = api_table().get(api_key)
    if api is None:
        return (), ()
    return _plan(api.response.fields, version)


def _plan(fields: tuple[FieldSpec, ...] | None, version: int) -> _Plan:
    codes: list[str] = []
    nested: list[tuple[str, bool, _Plan]] = []
    for f in fields or ():
        if version not in f.versions:
            continue
        if f.fields is not None:
            sub = _plan(f.fields, version)
            if sub[0] or sub[1]:
                nested.append((f.attr, f.is_array, sub))
        elif f.attr.endswith("error_code") and f.type == "int16":
            codes.append(f.attr)
    return tuple(codes), tuple(nested)


def _error_codes(body: Mapping[str, Any], plan: _Plan, found: dict[int, int]) -> None:
    """Add the non-zero error codes in ``body`` to ``found`` (code -> occurrences)."""
    codes, nested = plan
    for attr in codes:
        code = body.get(attr)
        if code:
            found[code] = found.get(code, 0) + 1
    for attr, is_array, sub in nested:
        value = body.get(attr)
        if not value:
            continue
        if is_array:
            for item in value:
                _error_codes(item, sub, found)
        else:
            _error_codes(value, sub, found)
