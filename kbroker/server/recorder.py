"""The flight recorder: one JSON line per request served (who asked, which API, how long it
took, what went wrong where), for ``kbroker serve --record FILE`` and the embedded broker's
``start_recording``; ``kbroker trace`` reads the file back.

Recording must neither slow serving down much nor ever stop it. On the event loop the
recorder only builds a bounded summary of the request and response (at most
:data:`ARRAY_CAP` items of an array are shown, every walk stops after a fixed number of
nodes, record data is counted, not copied) and encodes it as JSON (cheaper there than
contending for the GIL with a thread); a writer thread drains a bounded queue every
:data:`FLUSH_SECONDS` into the file (and, with payloads, decodes the records first). When the
queue is full the line is dropped and counted, and the file says how many lines were lost;
the request is served all the same.

A line (``"event": "request"``)::

    {"event": "request", "time": "2026-11-29T20:30:00.123Z", "time_ms": ..., "conn": 7,
     "listener": "PLAINTEXT", "client": "127.0.0.1:50412", "client_id": "producer-1",
     "principal": "User:ANONYMOUS", "api": "Produce", "api_key": 0, "version": 9,
     "correlation_id": 4, "latency_ms": 0.81, "request_size": 120, "response_size": 52,
     "outcome": "response", "topics": ["orders"],
     "errors": [{"code": 6, "error": "NOT_LEADER_OR_FOLLOWER", "topic": "orders", "partition": 0}],
     "request": {...}, "response": {...}}

``outcome`` is ``response``, ``no_response`` (the request is answered with nothing),
``closed`` (the connection was closed instead) or ``failed`` (the handler raised; the client
gets UNKNOWN_SERVER_ERROR). Other lines have ``"event"`` ``start``, ``dropped`` and ``stop``.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kbroker import __version__
from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.codec import encode_response_parts
from kbroker.codec.apis import api_table
from kbroker.codec.error_codes import ErrorCode
from kbroker.codec.schema import FieldSpec
from kbroker.handlers.api import CloseConnection, DetachedBody, EncodedBody
from kbroker.records.batch import iter_headers
from kbroker.records.record import iter_records
from kbroker.server.intercept import Body, Exchange, Handle

log = logging.getLogger(__name__)

#: Items of one array shown in a summary; the rest are counted.
ARRAY_CAP = 10
#: Characters of one string shown in a summary.
STRING_CAP = 200
#: Nodes (values) one summary shows; past it, values are left out and the summary says so.
SUMMARY_BUDGET = 1000
#: Nodes one scan for error codes and topic names visits (it reads every array item, unlike
#: the summary: an error in the 500th partition must be found).
SCAN_BUDGET = 20000
#: Structs of a response scanned past which its size is not measured (by encoding it again).
ENCODE_BUDGET = 2000
#: Error entries and topic names kept per line.
LIST_CAP = 50
#: Record batches counted in one records field.
BATCH_CAP = 1000
#: With payloads: records shown per records field, and bytes shown of one key or value.
PAYLOAD_RECORDS_CAP = 1000
PAYLOAD_BYTES_CAP = 16 * 1024
#: Lines waiting for the writer thread; past this, lines are dropped (and counted).
QUEUE_SIZE = 10000
#: With payloads: bytes of record data the queued lines may hold for the writer thread; past
#: it a line's record data is summarised (counted) instead, so a writer that falls behind a
#: producer of large batches does not hold up to QUEUE_SIZE copies of them in memory.
PAYLOAD_QUEUE_BYTES = 64 * 1024 * 1024
#: The writer flushes the file at least this often while lines come in (``trace --follow``).
FLUSH_SECONDS = 0.05

#: Keys whose string values are never written (config values of these names: passwords).
_SECRET_WORDS = ("password", "secret", "jaas")
#: The key under which a queued line notes the record data bytes it holds (never written).
_PAYLOAD_BYTES = "_payload_bytes"
#: Array keys whose items' ``name`` is a topic name.
_TOPIC_ARRAYS = frozenset({"topics", "responses", "topic_data", "results"})


def _is_topic_array(key: str | None) -> bool:
    return key is not None and (key in _TOPIC_ARRAYS or "topic" in key)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where, in one struct of a message, the scan looks: the error code fields here, the
    fields naming a topic here, and the arrays and structs below that hold either."""

    errors: tuple[str, ...]
    topic_keys: tuple[str, ...]
    children: tuple[tuple[str, _Plan], ...]


_EMPTY_PLAN = _Plan((), (), ())


def _plan_of(fields: tuple[FieldSpec, ...], in_topic_array: bool, want_topics: bool) -> _Plan:
    errors = tuple(f.attr for f in fields if f.attr.endswith("error_code") and f.type == "int16")
    topic_keys: tuple[str, ...] = ()
    if want_topics:
        names = ("topic", "topic_name", "topic_id", *(("name",) if in_topic_array else ()))
        topic_keys = tuple(f.attr for f in fields if f.attr in names)
    children = []
    for f in fields:
        if f.fields:
            sub = _plan_of(f.fields, _is_topic_array(f.attr), want_topics)
            if sub.errors or sub.topic_keys or sub.children:
                children.append((f.attr, sub))
    return _Plan(errors, topic_keys, tuple(children))


@functools.cache
def plan(api_key: int, kind: str) -> _Plan:
    """The scan plan of an API's requests (topics named) or responses (error codes), from
    its schema: the scan reads only the arrays that can hold what it looks for (not the API
    list of an ApiVersions answer, nor the brokers of a Metadata answer)."""
    api = api_table().get(api_key)
    if api is None:
        return _EMPTY_PLAN
    spec = api.request if kind == "request" else api.response
    return _plan_of(spec.fields, False, kind == "request")


class _Payload:
    """Record data whose records the writer thread decodes (``record.payloads=true``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


#: The structs from the top down to the one scanned: (array or field key, struct, outer chain).
_Chain = tuple[str | None, dict[str, Any], Any] | None


class _Walk:
    """One bounded walk over a decoded body: its summary, and (scanning every item the schema
    says may hold them) the non-zero error codes with the topic/partition/group they belong
    to, and the topic names of a request."""

    def __init__(self, payloads: bool, topic_name: Callable[[uuid.UUID], str | None] | None,
                 payload_room: int = PAYLOAD_QUEUE_BYTES) -> None:
        self.payloads = payloads
        #: Bytes of record data this walk may still keep for the writer; and those it kept.
        self.payload_room = payload_room
        self.payload_bytes = 0
        self.topic_name = topic_name
        self.summary_left = SUMMARY_BUDGET
        self.scan_left = SCAN_BUDGET
        self.truncated = False
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.topics: dict[str, None] = {}  # an ordered set

    def topic_of(self, value: Any) -> str | None:
        """A topic id's name when the broker knows it, else the id's text."""
        if isinstance(value, uuid.UUID):
            name = self.topic_name(value) if self.topic_name is not None else None
            return name if name is not None else str(value)
        return value if isinstance(value, str) and value else None

    def scan(self, value: Any, plan: _Plan, key: str | None = None, outer: _Chain = None) -> None:
        """Find error codes and topic names in the struct ``value`` as ``plan`` says (every
        item of the arrays it names, within the scan budget)."""
        if not isinstance(value, dict):
            return
        if self.scan_left <= 0:
            self.truncated = True
            return
        self.scan_left -= 1
        chain = (key, value, outer)
        for attr in plan.errors:
            code = value.get(attr)
            if code and isinstance(code, int):
                self._error(code, value, chain)
        if plan.topic_keys and len(self.topics) < LIST_CAP:
            for attr in plan.topic_keys:
                name = self.topic_of(value.get(attr))
                if name:
                    self.topics[name] = None
                    break
        for attr, sub in plan.children:
            child = value.get(attr)
            if type(child) is list or type(child) is tuple:
                for item in child:
                    self.scan(item, sub, attr, chain)
                    if self.scan_left <= 0:
                        self.truncated = True
                        return
            elif child is not None:
                self.scan(child, sub, attr, chain)

    def _where(self, chain: _Chain) -> dict[str, Any]:
        """The topic, partition, group and resource an error is about, from the structs that hold it."""
        links = []
        while chain is not None:
            links.append(chain)
            chain = chain[2]
        found: dict[str, Any] = {}
        for key, value, _ in reversed(links):
            topic = value.get("topic") or value.get("topic_name")
            if topic is None and _is_topic_array(key):
                topic = value.get("name")
            if topic is None:
                topic = value.get("topic_id")
            name = self.topic_of(topic)
            if name:
                found["topic"] = name
            for pkey in ("partition_index", "partition", "partition_id"):
                p = value.get(pkey)
                if isinstance(p, int):
                    found["partition"] = p
                    break
            else:
                p = value.get("index")
                if isinstance(p, int) and key is not None and "partition" in key:
                    found["partition"] = p
            for ckey, label in (("group_id", "group"), ("resource_name", "resource")):
                v = value.get(ckey)
                if isinstance(v, str) and v:
                    found[label] = v
        return found

    def _error(self, code: int, value: dict[str, Any], chain: _Chain) -> None:
        self.error_count += 1
        if len(self.errors) >= LIST_CAP:
            return
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"UNKNOWN({code})"
        entry: dict[str, Any] = {"code": int(code), "error": name, **self._where(chain)}
        message = value.get("error_message")
        if isinstance(message, str) and message:
            entry["message"] = message[:STRING_CAP]
        self.errors.append(entry)

    def summary(self, value: Any, key: str | None = None) -> Any:
        """A JSON-ready copy of ``value``: arrays capped, strings cut, bytes counted."""
        if self.summary_left <= 0:
            self.truncated = True
            return "…"
        self.summary_left -= 1
        t = type(value)
        if value is None or t is int or t is bool or t is float:
            return value
        if t is str:
            return value if len(value) <= STRING_CAP else value[:STRING_CAP] + "…"
        if isinstance(value, dict) or isinstance(value, Mapping):  # noqa: SIM101 - the cheap check first
            secret = "value" in value and _is_secret(value)
            out: dict[str, Any] = {}
            for k, v in value.items():
                if type(k) is not str or k[:1] == "_":
                    continue
                tv = type(v)
                if secret and k == "value" and v is not None:
                    out[k] = "[redacted]"
                elif v is None or tv is int or tv is bool or (tv is str and len(v) <= STRING_CAP):
                    out[k] = v  # most fields: taken inline, without a call
                    self.summary_left -= 1
                else:
                    out[k] = self.summary(v, k)
            return out
        if t is list or t is tuple:
            shown = [self.summary(v, key) for v in value[:ARRAY_CAP]]
            if len(value) > ARRAY_CAP:
                shown.append(f"+{len(value) - ARRAY_CAP} more")
            return shown
        if isinstance(value, (bytes, bytearray, memoryview)):
            if key == "records":
                return self.records(value)
            return {"bytes": len(value)}
        if isinstance(value, (int, float, str)):  # an IntEnum, a str subclass
            return value
        if isinstance(value, uuid.UUID):
            return str(value)
        if hasattr(value, "__len__"):  # a buffer of some other kind (record data read from a file)
            try:
                return {"bytes": len(value)}
            except Exception:  # noqa: BLE001 - a summary never fails the request
                pass
        return type(value).__name__

    def records(self, data: bytes | bytearray | memoryview) -> Any:
        """Record data: bytes, batches, records and offsets (headers only), or with payloads
        the data itself, decoded later in the writer thread."""
        out: dict[str, Any] = {"bytes": len(data)}
        if self.payloads and len(data):
            if len(data) <= self.payload_room:
                self.payload_room -= len(data)
                self.payload_bytes += len(data)
                # Immutable for the writer thread (a memoryview may look into a buffer reused later).
                return _Payload(data if isinstance(data, bytes) else bytes(data))
            out["payload_not_kept"] = True  # the writer is behind: counted below, as without payloads
        batches = records = 0
        first = last = None
        try:
            for _, h in iter_headers(data):
                if batches == BATCH_CAP:
                    out["batches_counted"] = BATCH_CAP
                    break
                batches += 1
                records += h.record_count
                if first is None:
                    first = h.base_offset
                last = h.last_offset
        except Exception:  # noqa: BLE001 - malformed data is the handler's business
            out["malformed"] = True
        if batches:
            out.update(batches=batches, records=records, base_offset=first, last_offset=last)
        return out


def _shallow(body: Mapping[str, Any]) -> dict[str, Any]:
    """A body's top-level scalars, and its arrays as their length."""
    return {k: {"items": len(v)} if isinstance(v, (list, tuple)) else v if v is None or isinstance(v, (int, str))
            else type(v).__name__ for k, v in body.items()}


@functools.cache
def _sensitive_keys() -> tuple[str, ...]:
    """The broker configs Kafka hides (type PASSWORD: a private key inline, a JAAS config...)."""
    from kbroker.config.broker import BROKER_CONFIGS

    return tuple(name for name, d in BROKER_CONFIGS.items() if d.sensitive)


def _is_secret(value: Mapping[str, Any]) -> bool:
    """A config entry (``name``/``value``) whose value is a password or other secret: a
    sensitive broker config (also per listener, ``listener.name.x.ssl.keystore.key``) or any
    name with a word of :data:`_SECRET_WORDS` (a plugin's own password)."""
    name = value.get("name") or value.get("key")
    if not isinstance(name, str) or "value" not in value:
        return False
    lowered = name.lower()
    return any(w in lowered for w in _SECRET_WORDS) or lowered.endswith(_sensitive_keys())


def _text_or_base64(data: bytes | None) -> Any:
    """A key or value as text when it is UTF-8, else as ``{"base64": ...}``; cut at
    :data:`PAYLOAD_BYTES_CAP` bytes."""
    if data is None:
        return None
    cut = len(data) > PAYLOAD_BYTES_CAP
    data = bytes(data[:PAYLOAD_BYTES_CAP])
    try:
        out: Any = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii"), **({"truncated": True} if cut else {})}
    return {"text": out, "truncated": True} if cut else out


def decode_payload(data: bytes) -> dict[str, Any]:
    """Record data with its records (offset, timestamp, key, value, headers), for
    ``record.payloads=true``; runs in the writer thread."""
    out: dict[str, Any] = {"bytes": len(data)}
    shown: list[dict[str, Any]] = []
    count = 0
    try:
        for pos, h in iter_headers(data):
            if h.is_control:
                continue
            for r in iter_records(memoryview(data)[pos:pos + h.size]):
                count += 1
                if len(shown) < PAYLOAD_RECORDS_CAP:
                    shown.append({"offset": r.offset, "timestamp": r.timestamp,
                                  "key": _text_or_base64(r.key), "value": _text_or_base64(r.value),
                                  "headers": [[k, _text_or_base64(v)] for k, v in r.headers]})
    except Exception as e:  # noqa: BLE001 - shown in the line, never raised
        out["malformed"] = str(e)[:STRING_CAP]
    out["records"] = shown
    if count > len(shown):
        out["records_not_shown"] = count - len(shown)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, _Payload):
        return decode_payload(value.data)
    return str(value)


#: The loop's JSON encoder: compact, no cycle check (summaries are trees built afresh).
_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
#: The last second formatted and its text, as one tuple (replaced whole: two threads format times).
_iso_second: list[tuple[int, str]] = [(-1, "")]


def _iso(ms: int) -> str:
    """``2026-11-29T20:30:00.123Z``; the second's text is formatted once per second."""
    second, milli = divmod(ms, 1000)
    cached = _iso_second[0]
    if cached[0] != second:
        cached = _iso_second[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{milli:03d}Z"


def _ends_mid_line(path: Path) -> bool:
    """Whether the file at ``path`` has data whose last byte is not a newline."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except OSError:  # not seekable (a pipe, /dev/full): nothing to repair
        return False


class Recorder:
    """The flight recorder interceptor; install it outermost so it records what clients get
    (after the fault injector's changes). :meth:`close` stops it and flushes the file."""

    def __init__(self, path: str | Path, *, payloads: bool = False, clock: Clock = SYSTEM_CLOCK,
                 topic_name: Callable[[uuid.UUID], str | None] | None = None,
                 queue_size: int = QUEUE_SIZE) -> None:
        """Open ``path`` for appending (OSError when it cannot be) and start the writer thread.
        ``topic_name`` names the topic of a topic id (requests that name topics by id)."""
        self.path = Path(path)
        self.payloads = payloads
        self.clock = clock
        self.topic_name = topic_name
        #: Lines dropped because the writer thread fell behind (the queue was full).
        self.dropped = 0
        #: Requests whose line could not be built (a bug in the recorder; serving went on).
        self.failures = 0
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the writer
        if _ends_mid_line(self.path):
            # A recording cut short (the broker was killed mid-write): our first line starts a line of its own.
            self._file.write("\n")
        # A deque, not a queue.Queue: appending wakes no thread (the writer drains it every
        # FLUSH_SECONDS), so a request pays an append, not a lock and a thread switch.
        self._queue: collections.deque[str | dict[str, Any]] = collections.deque()
        self._queue_size = queue_size
        #: Bytes of record data the queued lines hold (added on the loop, taken off by the writer).
        self._payload_bytes = 0
        self._payload_lock = threading.Lock()
        self._closing = threading.Event()
        self._queue.append({"event": "start", "time": _iso(clock.time_ms()), "payloads": payloads,
                            "kbroker": __version__})
        self._thread = threading.Thread(target=self._write_loop, name="kbroker-recorder", daemon=True)
        self._thread.start()

    async def __call__(self, exchange: Exchange, handle: Handle) -> Body:
        start, start_ms = time.perf_counter(), self.clock.time_ms()
        try:
            body = await handle()
        except CloseConnection as e:
            self._record(exchange, start, start_ms, None, "closed", str(e))
            raise
        except Exception as e:
            self._record(exchange, start, start_ms, None, "failed", f"{type(e).__name__}: {e}")
            raise
        self._record(exchange, start, start_ms, body, "response" if body is not None else "no_response", None)
        return body

    def _record(self, ex: Exchange, start: float, start_ms: int, body: Any, outcome: str,
                reason: str | None) -> None:
        """Queue the line of one request; never raises, never waits."""
        if self._closing.is_set():
            return
        try:
            line = self._line(ex, start, start_ms, body, outcome, reason)
        except Exception:  # noqa: BLE001 - the recorder never fails a request
            self.failures += 1
            if self.failures == 1:
                log.exception("the flight recorder cannot record a request (further failures are counted)")
            return
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        if not self.payloads:
            # Encoded here: a few tens of µs on the loop cost less than the writer thread taking
            # the GIL for them (the loop would wait for it up to the 5 ms switch interval).
            try:
                self._queue.append(_ENCODE(line))
            except Exception:  # noqa: BLE001 - the recorder never fails a request
                self.failures += 1
            return
        held = line.get(_PAYLOAD_BYTES, 0)
        if held:
            with self._payload_lock:
                self._payload_bytes += held
        self._queue.append(line)  # records to decode: the writer thread encodes it

    def _line(self, ex: Exchange, start: float, start_ms: int, body: Any, outcome: str,
              reason: str | None) -> dict[str, Any]:
        """The line of one request (``time`` is when it reached the recorder)."""
        latency = (time.perf_counter() - start) * 1000
        api = api_table().get(ex.api_key)
        s = ex.session
        line: dict[str, Any] = {
            "event": "request", "time": _iso(start_ms), "time_ms": start_ms, "conn": s.connection_id,
            "listener": s.listener, "client": f"{s.client_host}:{s.client_port}", "client_id": ex.client_id,
            "principal": s.principal, "api": api.name if api is not None else str(ex.api_key),
            "api_key": ex.api_key, "version": ex.api_version, "correlation_id": ex.correlation_id,
            "latency_ms": round(latency, 3), "request_size": ex.request_size,
        }
        walk = _Walk(self.payloads, self.topic_name, PAYLOAD_QUEUE_BYTES - self._payload_bytes)
        walk.scan(ex.request, plan(ex.api_key, "request"))
        request = walk.summary(ex.request)
        response = None
        if body is not None:
            walk.scan_left = SCAN_BUDGET  # the response's own budget: a huge request must not hide its errors
            walk.scan(body, plan(ex.api_key, "response"))
            # A pre-encoded answer (ApiVersions') is the same for every client: its arrays are counted.
            response = (_shallow(body) if isinstance(body, EncodedBody) else walk.summary(body))
            line["response_size"] = self._response_size(ex, body, walk)
        line["outcome"] = outcome
        if reason is not None:
            line["reason"] = reason[:STRING_CAP]
        line["topics"] = list(walk.topics)
        if outcome == "failed":
            walk.errors.insert(0, {"code": -1, "error": "UNKNOWN_SERVER_ERROR"})
            walk.error_count += 1
        line["errors"] = walk.errors
        if walk.error_count > len(walk.errors):
            line["errors_not_shown"] = walk.error_count - len(walk.errors)
        throttle = body.get("throttle_time_ms") if isinstance(body, Mapping) else None
        if throttle:
            line["throttle_ms"] = throttle
        if ex.notes:
            line["notes"] = walk.summary(ex.notes)
        if walk.truncated:
            line["truncated"] = True
        line["request"] = request
        line["response"] = response
        if walk.payload_bytes:
            line[_PAYLOAD_BYTES] = walk.payload_bytes  # taken out by the writer, never written
        return line

    @staticmethod
    def _response_size(ex: Exchange, body: Any, walk: _Walk) -> int | None:
        """Bytes of the response frame (without its size prefix), as ``request_size``; None
        for a body too large to encode a second time within the recorder's budget."""
        api = api_table()[ex.api_key]
        if isinstance(body, EncodedBody):
            return len(body.encoded) + (4 if api.response_header_version(ex.api_version) == 0 else 5)
        # Encoding again costs what dispatch's encoding costs: only for bodies of few structs.
        # Dispatch encodes a DetachedBody (many items) in a worker thread: not the loop's work.
        if walk.truncated or SCAN_BUDGET - walk.scan_left > ENCODE_BUDGET or isinstance(body, DetachedBody):
            return None
        try:
            parts = encode_response_parts(ex.api_key, ex.api_version, ex.correlation_id, body)
        except Exception:  # noqa: BLE001 - dispatch reports encoding errors, not the recorder
            return None
        return sum(len(p) for p in parts) - 4

    # -- writer thread -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        f = self._file
        lines = self._queue
        reported = 0
        try:
            while True:
                closing = self._closing.wait(FLUSH_SECONDS)
                written = False
                while lines:
                    line = lines.popleft()
                    if isinstance(line, dict):
                        held = line.pop(_PAYLOAD_BYTES, 0)
                        try:
                            line = json.dumps(line, default=_json_default, ensure_ascii=False)
                        except Exception as e:  # noqa: BLE001 - one bad line must not stop the file
                            line = json.dumps({"event": "unwritable", "reason": str(e)[:STRING_CAP]})
                        finally:
                            if held:
                                with self._payload_lock:
                                    self._payload_bytes -= held
                    f.write(line + "\n")
                    written = True
                noted = self._note_drops(f, reported)
                if written or noted != reported:
                    f.flush()
                reported = noted
                if closing:
                    break
            f.write(json.dumps({"event": "stop", "time": _iso(self.clock.time_ms()), "dropped": self.dropped,
                                "failures": self.failures}) + "\n")
        except Exception:  # noqa: BLE001 - OSError mostly (a full disk); anything else stops it alike
            log.exception("the flight recorder cannot write to %s; recording stopped", self.path)
            self._closing.set()
            lines.clear()  # never written: what they hold (record data with payloads) is let go
        finally:
            try:
                f.close()
            except OSError:
                log.exception("the flight recorder cannot close %s", self.path)

    def _note_drops(self, f: IO[str], reported: int) -> int:
        """Write how many lines were dropped since ``reported`` were; returns the new total."""
        dropped = self.dropped  # only the event loop adds to it
        if dropped != reported:
            f.write(json.dumps({"event": "dropped", "time": _iso(self.clock.time_ms()),
                                "count": dropped - reported, "total": dropped}) + "\n")
        return dropped

    def close(self, timeout: float = 5.0) -> None:
        """Stop recording: the lines queued are written, then a ``stop`` line; the file is closed."""
        self._closing.set()
        self._thread.join(timeout)
