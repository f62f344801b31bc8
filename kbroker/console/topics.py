"""Console pages: the topics list (with a filter) and a topic's detail (partitions, configs with
their source, produce and consume rates), and the topic actions: create, delete, alter a config,
produce a test message. Actions are Kafka requests served in-process (``backend.request``): the
broker's own validation, error codes and ACLs apply, and its error message is shown."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from markupsafe import Markup, escape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from kbroker.client.data import partition_for_key
from kbroker.codec.error_codes import ErrorCode
from kbroker.console.backend import ConsoleBackend
from kbroker.console.context import Console
from kbroker.console.live import SAMPLE_SECONDS, Live, human_bytes, live_for, pause, sse_event, stopping_of
from kbroker.console.svg import sparkline
from kbroker.records.builder import NewRecord, build_batch
from kbroker.security.model import ANONYMOUS, AclOperation, ResourceType

#: Topics one page of the list shows at most (a filter narrows them).
MAX_TOPICS = 1000
#: Largest action form accepted (a test message's value and headers included).
MAX_FORM_BYTES = 1024 * 1024
PRODUCE, CREATE_TOPICS, DELETE_TOPICS, DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 0, 19, 20, 32, 44
TOPIC_RESOURCE = 2
#: DescribeConfigs' config_source values, as Kafka's admin client names them.
CONFIG_SOURCES = {0: "UNKNOWN", 1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG",
                  3: "DYNAMIC_DEFAULT_BROKER_CONFIG", 4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG",
                  6: "DYNAMIC_BROKER_LOGGER_CONFIG", 7: "CLIENT_METRICS_CONFIG", 8: "GROUP_CONFIG"}
_round_robin = itertools.count()


# -- helpers shared by the page modules -------------------------------------------------------------
def principal_of(request: Request) -> str:
    """The console user's principal (``User:ANONYMOUS`` when nobody logged in)."""
    return getattr(request.state, "principal", None) or ANONYMOUS


def may_describe(backend: ConsoleBackend, request: Request, resource: ResourceType, name: str) -> bool:
    """Whether the console user may see ``name`` (DESCRIBE, as a client listing it would need)."""
    authorizer = backend.services.authorizer
    if authorizer is None:
        return True
    host = request.client.host if request.client else "127.0.0.1"
    return authorizer.authorize(principal_of(request), host, AclOperation.DESCRIBE, resource, name)


def int_param(value: str | None, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    """``value`` as an int (None when absent or empty); a clear 400 when it is not one or out of range."""
    if value is None or value.strip() == "":
        return None
    try:
        n = int(value.strip())
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and n < minimum:
        raise HTTPException(400, f"{name} must be at least {minimum}")
    if maximum is not None and n > maximum:
        raise HTTPException(400, f"{name} must be at most {maximum}")
    return n


def parse_pairs(text: str, what: str) -> list[tuple[str, str]]:
    """``k=v`` lines (blank lines skipped); a 400 naming the bad line otherwise."""
    pairs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise HTTPException(400, f"{what}: expected key=value, got {line.strip()!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def refuse_if_read_only(console: Console) -> None:
    """Every action ends here first: a read-only console does none (403)."""
    if console.settings.read_only:
        raise HTTPException(403, "the console is read-only (console.read.only=true)")


def outcome(ok: bool, message: str, *, status: int | None = None, link: tuple[str, str] | None = None) -> HTMLResponse:
    """An action's result as the fragment the page swaps in: 200 on success; on failure
    Kafka's error (400 by default). ``link``: (href, text) of where to go next."""
    css = "ok" if ok else "error"
    after = f' <a href="{escape(link[0])}">{escape(link[1])}</a>' if link else ""
    return HTMLResponse(f'<p class="{css} outcome">{escape(message)}{after}</p>',
                        status_code=200 if ok else (status or 400))


def kafka_error(code: int, message: str | None) -> str:
    """``NAME: message`` for a Kafka error code."""
    try:
        name = ErrorCode(code).name
    except ValueError:
        name = f"error {code}"
    return f"{name}: {message}" if message else name


async def form_of(request: Request) -> dict[str, str]:
    """The request's form fields (url-encoded, as browsers and htmx send them; at most
    :data:`MAX_FORM_BYTES`, else 413)."""
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form url-encoded (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form holds at most {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPException(400, f"cannot read the form: {e}") from None


# -- reads ----------------------------------------------------------------------------------------
def topic_rows(backend: ConsoleBackend, request: Request, query: str) -> tuple[list[dict[str, Any]], int]:
    """The topics whose name contains ``query`` (at most MAX_TOPICS) and how many matched in all."""
    services = backend.services
    names = sorted(n for n in services.metadata.topics if query.lower() in n.lower())
    rows: list[dict[str, Any]] = []
    matched = 0
    for name in names:
        if not may_describe(backend, request, ResourceType.TOPIC, name):
            continue
        matched += 1
        if len(rows) >= MAX_TOPICS:
            continue
        info = services.metadata.topics.get(name)
        if info is None:
            continue
        size = messages = 0
        for index in info.partitions:
            log = services.log_manager.get_log(name, index)  # type: ignore[attr-defined]
            if log is not None:
                size += log.size_in_bytes
                messages += max(0, log.high_watermark - log.log_start_offset)
        config = services.metadata.log_config(name)
        rows.append({"name": name, "partitions": len(info.partitions), "size": human_bytes(size),
                     "bytes": size, "messages": messages, "internal": info.internal,
                     "retention": _retention(config.retention_ms), "cleanup": config.cleanup_policy})
    return rows, matched


def _retention(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


async def describe_configs(backend: ConsoleBackend, name: str, principal: str) -> tuple[list[dict[str, Any]], str | None]:
    """The topic's configs with their sources (DescribeConfigs served in-process), or Kafka's error."""
    response = await backend.request(DESCRIBE_CONFIGS, {
        "resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": name, "configuration_keys": None}],
        "include_synonyms": False, "include_documentation": False}, principal=principal)
    result = response["results"][0]
    if result["error_code"]:
        return [], kafka_error(result["error_code"], result.get("error_message"))
    configs = [{"name": c["name"], "value": "(sensitive)" if c["is_sensitive"] else c["value"],
                "source": CONFIG_SOURCES.get(c["config_source"], str(c["config_source"])),
                "read_only": c["read_only"]} for c in result["configs"]]
    return sorted(configs, key=lambda c: c["name"]), None


def partition_rows(backend: ConsoleBackend, name: str) -> list[dict[str, Any]]:
    """One row per partition: offsets, size, leader, replicas and ISR."""
    services = backend.services
    info = services.metadata.topics.get(name)
    if info is None:
        return []
    rows = []
    for index, p in sorted(info.partitions.items()):
        log = services.log_manager.get_log(name, index)  # type: ignore[attr-defined]
        rows.append({"index": index, "leader": p.leader, "replicas": p.replicas, "isr": p.isr,
                     "start": log.log_start_offset if log is not None else None,
                     "end": log.high_watermark if log is not None else None,
                     "size": human_bytes(log.size_in_bytes) if log is not None else ""})
    return rows


def rate_chart(live: Live, topic: str) -> Markup:
    """The topic's produce (messages/s) and consume (bytes/s) rates since it was opened."""
    history = list(live.topic_history.get(topic, ()))
    return sparkline([[h[0] for h in history], [h[1] for h in history]], width=320, height=48,
                     labels=("produced (messages/s)", "consumed (bytes/s)"), element_id="rate")


# -- routes ---------------------------------------------------------------------------------------
def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    backend = console.backend
    live = live_for(console, backend)

    async def topic_list(request: Request) -> Response:
        query = request.query_params.get("q", "")[:249]
        rows, matched = topic_rows(backend, request, query)
        return console.render(request, "topics.html", topics=rows, q=query, matched=matched, cap=MAX_TOPICS)

    async def create(request: Request) -> Response:
        refuse_if_read_only(console)
        form = await form_of(request)
        name = str(form.get("name", "")).strip()
        if not name:
            raise HTTPException(400, "name: a topic needs a name")
        partitions = int_param(str(form.get("partitions", "")), "partitions")
        replication = int_param(str(form.get("replication_factor", "")), "replication_factor")
        configs = parse_pairs(str(form.get("configs", "")), "configs")
        response = await backend.request(CREATE_TOPICS, {
            "topics": [{"name": name, "num_partitions": -1 if partitions is None else partitions,
                        "replication_factor": -1 if replication is None else replication, "assignments": [],
                        "configs": [{"name": k, "value": v} for k, v in configs]}],
            "timeout_ms": 30000, "validate_only": False}, principal=principal_of(request))
        result = response["topics"][0]
        if result["error_code"]:
            return outcome(False, kafka_error(result["error_code"], result.get("error_message")))
        return outcome(True, f"Created topic {name} ({result.get('num_partitions', partitions)} partitions).",
                       link=(f"/topics/{quote(name, safe='')}", "Open it"))

    async def detail(request: Request) -> Response:
        name = request.path_params["name"]
        info = backend.services.metadata.topics.get(name)
        if info is None or not may_describe(backend, request, ResourceType.TOPIC, name):
            return console.render(request, "not_found.html", status_code=404, what=f"Topic {name}")
        configs, config_error = await describe_configs(backend, name, principal_of(request))
        return console.render(request, "topic.html", name=name, internal=info.internal,
                              topic_id=str(info.topic_id), partitions=partition_rows(backend, name),
                              configs=configs, config_error=config_error, chart=rate_chart(live, name))

    async def delete(request: Request) -> Response:
        refuse_if_read_only(console)
        name = request.path_params["name"]
        response = await backend.request(DELETE_TOPICS, {"topics": [{"name": name, "topic_id": _NO_ID}],
                                                         "timeout_ms": 30000}, principal=principal_of(request))
        result = response["responses"][0]
        if result["error_code"]:
            return outcome(False, kafka_error(result["error_code"], result.get("error_message")))
        return outcome(True, f"Deleted topic {name}.", link=("/topics", "Back to the topics"))

    async def alter_config(request: Request) -> Response:
        refuse_if_read_only(console)
        name = request.path_params["name"]
        form = await form_of(request)
        key = str(form.get("key", "")).strip()
        if not key:
            raise HTTPException(400, "key: which config to change?")
        remove = str(form.get("delete", "")) not in ("", "0", "false")
        value = str(form.get("value", ""))
        response = await backend.request(INCREMENTAL_ALTER_CONFIGS, {
            "resources": [{"resource_type": TOPIC_RESOURCE, "resource_name": name, "configs": [
                {"name": key, "config_operation": 1 if remove else 0, "value": None if remove else value}]}],
            "validate_only": False}, principal=principal_of(request))
        result = response["responses"][0]
        if result["error_code"]:
            return outcome(False, kafka_error(result["error_code"], result.get("error_message")))
        return outcome(True, f"{key} reset to its default." if remove else f"{key} set to {value}.")

    async def produce(request: Request) -> Response:
        refuse_if_read_only(console)
        name = request.path_params["name"]
        form = await form_of(request)
        info = backend.services.metadata.topics.get(name)
        partition = int_param(str(form.get("partition", "")), "partition", minimum=0)
        key = str(form.get("key", "")).encode() or None
        value = str(form.get("value", "")).encode()
        headers = [(k, v.encode()) for k, v in parse_pairs(str(form.get("headers", "")), "headers")]
        if partition is None:
            # As Kafka's default partitioner: by the key's murmur2 hash; without a key, in turn.
            count = len(info.partitions) if info is not None and info.partitions else 1
            partition = partition_for_key(key, count) if key is not None else next(_round_robin) % count
        batch = build_batch([NewRecord(key, value, headers, int(time.time() * 1000))])
        response = await backend.request(PRODUCE, {
            "transactional_id": None, "acks": -1, "timeout_ms": 30000,
            "topic_data": [{"name": name, "partition_data": [{"index": partition, "records": batch}]}]},
            principal=principal_of(request), version=9)
        result = response["responses"][0]["partition_responses"][0]
        if result["error_code"]:
            return outcome(False, kafka_error(result["error_code"], result.get("error_message")))
        return outcome(True, f"Produced to {name}-{partition} at offset {result['base_offset']}.")

    async def stream(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in backend.services.metadata.topics or not may_describe(backend, request, ResourceType.TOPIC,
                                                                             name):
            raise HTTPException(404, f"no topic {name}")
        return StreamingResponse(_topic_events(live, name, stopping_of(backend)), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return [
        Route("/topics", topic_list, name="topics"),
        Route("/topics", create, methods=["POST"], name="create-topic"),
        Route("/topics/{name}", detail, name="topic"),
        Route("/topics/{name}/delete", delete, methods=["POST"], name="delete-topic"),
        Route("/topics/{name}/config", alter_config, methods=["POST"], name="alter-config"),
        Route("/topics/{name}/produce", produce, methods=["POST"], name="produce"),
        Route("/live/topics/{name}", stream, name="live-topic"),
    ]


_NO_ID = uuid.UUID(int=0)


async def _topic_events(live: Live, name: str, stopping: Callable[[], bool]) -> AsyncIterator[str]:
    async with live.watching(name):
        while True:
            sample = live.sample()
            produced, consumed = sample.topic_rates.get(name, (0.0, 0.0))
            yield sse_event("rate", str(rate_chart(live, name)))
            yield sse_event("rate-text", f"{produced:.1f} messages/s in, {human_bytes(consumed)}/s out")
            if not await pause(SAMPLE_SECONDS, stopping):
                return
