"""Console pages: consumer groups (list, detail with members, committed offsets and lag, lag
over time, live total lag, resetting offsets) and share groups.

Reads go to the group coordinator in-process; a group or topic is shown only when the
principal may DESCRIBE it. Resetting offsets is an OffsetCommit served in-process as the
principal, only for a group without members, as ``kafka-consumer-groups --reset-offsets``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from kbroker.client.data import list_offsets_body
from kbroker.client.groups import decode_assignment
from kbroker.codec.error_codes import ErrorCode
from kbroker.common import TopicPartition
from kbroker.console.auth import FormError, allowed, form_fields, principal_of
from kbroker.console.context import Console
from kbroker.console.svg import sparkline
from kbroker.groups.errors import Errors, GroupError
from kbroker.handlers.api import BrokerServices
from kbroker.security.model import AclOperation, ResourceType

#: Most groups the list shows (the filter narrows them).
MAX_GROUPS = 1000
#: Most partition rows of a group's offsets table.
MAX_OFFSET_ROWS = 2000
#: Points of lag history kept per group, and groups with a history kept.
HISTORY_POINTS = 120
HISTORY_GROUPS = 50
#: Seconds between two samples of a watched group's lag (one sample per interval however many watch).
SAMPLE_INTERVAL_S = 1.0

LIST_OFFSETS, OFFSET_COMMIT = 2, 8
EARLIEST, LATEST = -2, -1
RESET_TARGETS = ("earliest", "latest", "offset", "timestamp")


@dataclass
class OffsetRow:
    """One partition of a group: committed offset, end offset (high watermark), lag."""

    topic: str
    partition: int
    committed: int | None
    end: int | None
    member: str = ""

    @property
    def lag(self) -> int | None:
        """Records not consumed yet (None when the committed or end offset is unknown)."""
        if self.committed is None or self.end is None:
            return None
        return max(0, self.end - self.committed)


@dataclass
class MemberRow:
    """One member with its assignment."""

    member_id: str
    client_id: str
    client_host: str
    instance_id: str | None = None
    assignment: list[TopicPartition] = field(default_factory=list)


@dataclass
class History:
    """A group's sampled total lag: (time, lag) pairs, bounded."""

    points: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    viewers: int = 0
    last: float = 0.0


class LagHistories:
    """Total lag over time per group, sampled only while an event stream of the group is open."""

    def __init__(self) -> None:
        self._groups: OrderedDict[str, History] = OrderedDict()

    def get(self, group_id: str) -> History | None:
        """The group's history, if it was ever watched (and not evicted)."""
        return self._groups.get(group_id)

    def watch(self, group_id: str) -> History:
        """A viewer arrives (call :meth:`leave` when it goes)."""
        history = self._groups.get(group_id)
        if history is None:
            history = self._groups[group_id] = History()
            while len(self._groups) > HISTORY_GROUPS:
                victim = next((g for g, h in self._groups.items() if h.viewers == 0), None)
                if victim is None:
                    break
                del self._groups[victim]
        self._groups.move_to_end(group_id)
        history.viewers += 1
        return history

    def leave(self, history: History) -> None:
        """A viewer left."""
        history.viewers = max(0, history.viewers - 1)

    def sample(self, history: History, lag: int, now: float) -> bool:
        """Record ``lag`` unless a viewer did less than an interval ago; True when recorded."""
        if history.points and now - history.last < SAMPLE_INTERVAL_S * 0.9:
            return False
        history.points.append((now, lag))
        history.last = now
        return True

    @property
    def watched(self) -> int:
        """Groups with a viewer now."""
        return sum(1 for h in self._groups.values() if h.viewers)


def histories(console: Console) -> LagHistories:
    """The console's lag histories (made at first use)."""
    found: LagHistories | None = getattr(console, "_lag_histories", None)
    if found is None:
        found = LagHistories()
        console._lag_histories = found  # type: ignore[attr-defined]
    return found


# ------------------------------------------------------------------------------ reading


def _end_offsets(services: BrokerServices) -> Mapping[TopicPartition, Any]:
    return services.log_manager.all_logs()


def _end(logs: Mapping[TopicPartition, Any], topic: str, partition: int) -> int | None:
    plog = logs.get(TopicPartition(topic, partition))
    if plog is None or getattr(plog, "closed", False):
        return None
    return int(plog.high_watermark)


def committed_offsets(services: BrokerServices, group_id: str) -> dict[TopicPartition, int]:
    """The group's committed offsets (its pending transactional ones excluded)."""
    group = services.groups.manager.get(group_id)
    if group is None:
        return {}
    return {tp: o.offset for tp, o in list(group.offsets.items())}


def group_type(services: BrokerServices, group_id: str) -> str | None:
    """classic, consumer, share or None."""
    try:
        return services.groups.group_type(group_id)
    except GroupError:
        return None


def members_of(services: BrokerServices, group_id: str, kind: str) -> tuple[str, str, list[MemberRow]]:
    """(state, protocol, members with assignments) of a classic or consumer group."""
    if kind == "consumer":
        desc = services.groups.consumer.describe(group_id)
        rows = []
        for m in desc.members:
            tps = []
            for topic_id, parts in m.assignment.items():
                info = services.metadata.topic_by_id(topic_id)
                name = info.name if info is not None else str(topic_id)
                tps += [TopicPartition(name, p) for p in parts]
            rows.append(MemberRow(m.member_id, m.client_id, m.client_host, m.instance_id, sorted(tps)))
        return desc.state, desc.assignor, rows
    summary = services.groups.describe_group(group_id)
    if summary is None:
        raise GroupError(Errors.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
    members = [MemberRow(m.member_id, m.client_id, m.client_host, m.group_instance_id,
                         list(decode_assignment(m.assignment)) if summary.protocol_type == "consumer" else [])
               for m in summary.members]
    return summary.state, summary.protocol or summary.protocol_type, members


def offset_rows(console: Console, request: Request, group_id: str,
                members: Iterable[MemberRow] = ()) -> list[OffsetRow]:
    """Committed offsets, end offsets and lag per partition (topics the principal may DESCRIBE),
    with the assigned partitions that have no commit yet."""
    services = console.backend.services
    logs = _end_offsets(services)
    owner = {tp: m.client_id or m.member_id for m in members for tp in m.assignment}
    committed: dict[TopicPartition, int | None] = dict(committed_offsets(services, group_id))
    for tp in owner:
        committed.setdefault(tp, None)
    visible: dict[str, bool] = {}
    rows = []
    for tp in sorted(committed):
        if tp.topic not in visible:
            visible[tp.topic] = allowed(console, request, AclOperation.DESCRIBE, ResourceType.TOPIC, tp.topic)
        if visible[tp.topic]:
            rows.append(OffsetRow(tp.topic, tp.partition, committed[tp], _end(logs, tp.topic, tp.partition),
                                  owner.get(tp, "")))
        if len(rows) >= MAX_OFFSET_ROWS:
            break
    return rows


def total_lag(services: BrokerServices, group_id: str) -> int:
    """The sum of the group's lag over its committed partitions hosted here."""
    logs = _end_offsets(services)
    total = 0
    for tp, offset in committed_offsets(services, group_id).items():
        end = _end(logs, tp.topic, tp.partition)
        if end is not None:
            total += max(0, end - offset)
    return total


def member_count(services: BrokerServices, group_id: str, kind: str) -> int:
    """How many members the group has now."""
    if kind == "consumer":
        g = services.groups.consumer.get(group_id)
        return 0 if g is None else len(g.members)
    if kind == "share":
        s = services.share_groups.groups.get(group_id)
        return 0 if s is None else len(s.members)
    c = services.groups.manager.get(group_id)
    return 0 if c is None else len(c.members)


def lag_sparkline(values: list[int]) -> Markup:
    """``#lag-history``: the sampled total lag as a server-side SVG sparkline."""
    return sparkline([[float(v) for v in values]], width=150, height=40, labels=["total lag"],
                     element_id="lag-history")


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


# ------------------------------------------------------------------------------ reset offsets


class ResetRefused(Exception):
    """The reset cannot be done; ``message`` says why (Kafka's words where Kafka refuses).
    Answered 400 like the console's other refused actions (the page swaps the error in)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


async def _list_offsets(console: Console, principal: str, partitions: list[TopicPartition],
                        timestamp: int) -> dict[TopicPartition, int]:
    response = await console.backend.request(LIST_OFFSETS, list_offsets_body(partitions, timestamp),
                                             principal=principal)
    out: dict[TopicPartition, int] = {}
    for t in response.topics:
        for p in t.partitions:
            if p.error_code != 0:
                raise ResetRefused(f"ListOffsets of {t.name}-{p.partition_index} failed: {_error_name(p.error_code)}")
            out[TopicPartition(t.name, p.partition_index)] = p.offset
    return out


async def reset_offsets(console: Console, principal: str, group_id: str, topic: str, to: str,
                        value: int | None) -> dict[TopicPartition, int]:
    """Commit new offsets for ``topic`` (all the group's committed topics when empty) as
    ``kafka-consumer-groups --reset-offsets --to-earliest|--to-latest|--to-offset|--to-datetime``:
    only while the group has no members. Returns the offsets committed."""
    services = console.backend.services
    kind = group_type(services, group_id)
    if kind == "share":
        raise ResetRefused("Share groups' offsets are not reset here: they are not committed offsets.")
    if kind is not None and member_count(services, group_id, kind):
        consumer_group, classic_group = services.groups.consumer.get(group_id), services.groups.manager.get(group_id)
        state = consumer_group.state if consumer_group is not None else \
            classic_group.state.value if classic_group is not None else "unknown"
        raise ResetRefused(f"Assignments can only be reset if the group '{group_id}' is inactive, but the "
                           f"current state is {state}.")
    if topic:
        info = services.metadata.topic(topic)
        if info is None:
            raise ResetRefused(f"Topic {topic} does not exist: {ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.name}")
        partitions = [TopicPartition(topic, p) for p in sorted(info.partitions)]
    else:
        partitions = sorted(committed_offsets(services, group_id))
        if not partitions:
            raise ResetRefused(f"Group {group_id} has no committed offsets: name a topic to reset.")
    if to == "earliest":
        targets = await _list_offsets(console, principal, partitions, EARLIEST)
    elif to == "latest":
        targets = await _list_offsets(console, principal, partitions, LATEST)
    elif to == "timestamp":
        assert value is not None
        targets = await _list_offsets(console, principal, partitions, value)
        missing = [tp for tp, o in targets.items() if o < 0]
        if missing:  # no record at or after the time: the end, as Kafka's tool does
            latest = await _list_offsets(console, principal, missing, LATEST)
            targets.update(latest)
    else:
        assert value is not None
        # As Kafka's tool: an offset out of range is moved to the nearest end.
        low = await _list_offsets(console, principal, partitions, EARLIEST)
        high = await _list_offsets(console, principal, partitions, LATEST)
        targets = {tp: min(max(value, low[tp]), high[tp]) for tp in partitions}
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for tp, offset in sorted(targets.items()):
        by_topic.setdefault(tp.topic, []).append(
            {"partition_index": tp.partition, "committed_offset": offset, "committed_leader_epoch": -1,
             "committed_metadata": ""})
    body = {"group_id": group_id, "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()]}
    response = await console.backend.request(OFFSET_COMMIT, body, principal=principal, version=9)
    errors = sorted({p.error_code for t in response.topics for p in t.partitions} - {0})
    if errors:
        raise ResetRefused("OffsetCommit failed: " + ", ".join(_error_name(e) for e in errors))
    return targets


# ------------------------------------------------------------------------------ pages


def _is_htmx(request: Request) -> bool:
    return "hx-request" in request.headers


def routes(console: Console) -> list[BaseRoute]:
    """The routes of these pages."""
    services = console.backend.services
    lag_histories = histories(console)

    def listing(request: Request, kinds: set[str]) -> tuple[list[dict[str, Any]], int, str | None]:
        q = request.query_params.get("q", "").strip()
        try:
            groups = services.groups.list_groups()
        except GroupError as e:  # loading, or not serving groups yet: told, as ListGroups would
            return [], 0, e.code.name if str(e) == e.code.name else f"{e.code.name}: {e}"
        rows: list[dict[str, Any]] = []
        hidden = 0
        for g in sorted(groups, key=lambda g: g.group_id):
            if g.group_type not in kinds or (q and q not in g.group_id):
                continue
            if not allowed(console, request, AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id):
                continue
            if len(rows) >= MAX_GROUPS:
                hidden += 1
                continue
            rows.append({"group_id": g.group_id, "state": g.state, "type": g.group_type,
                         "protocol": g.protocol_type, "members": member_count(services, g.group_id, g.group_type),
                         "lag": total_lag(services, g.group_id) if g.group_type != "share" else None})
        return rows, hidden, None

    def not_found(request: Request, what: str) -> Response:
        return console.render(request, "group_missing.html", status_code=404, what=what)

    def denied(request: Request, group_id: str) -> Response:
        return console.render(request, "group_missing.html", status_code=403,
                              what=f"Not authorized to describe group {group_id} "
                                   f"({ErrorCode.GROUP_AUTHORIZATION_FAILED.name}).")

    async def groups_page(request: Request) -> Response:
        rows, hidden, error = listing(request, {"classic", "consumer"})
        return console.render(request, "groups.html", groups=rows, hidden=hidden, error=error,
                              q=request.query_params.get("q", ""))

    async def group_page(request: Request) -> Response:
        group_id = request.path_params["group_id"]
        if not allowed(console, request, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            return denied(request, group_id)
        kind = group_type(services, group_id)
        if kind == "share":
            return RedirectResponse(f"/share-groups/{group_id}", status_code=303)
        if kind is None and not committed_offsets(services, group_id):
            return not_found(request, f"Group {group_id} not found.")
        state, protocol, members = ("Empty", "", []) if kind is None else members_of(services, group_id, kind)
        rows = offset_rows(console, request, group_id, members)
        history = lag_histories.get(group_id)
        values = [v for _, v in history.points] if history else []
        return console.render(request, "group.html", group_id=group_id, kind=kind or "classic", state=state,
                              protocol=protocol, members=members, offsets=rows,
                              total_lag=sum(r.lag or 0 for r in rows),
                              history=lag_sparkline(values),
                              topics=sorted({r.topic for r in rows}), targets=RESET_TARGETS)

    async def lag_stream(request: Request) -> Response:
        group_id = request.path_params["group_id"]
        if not allowed(console, request, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            return Response("Not authorized", status_code=403)

        async def events() -> AsyncIterator[str]:
            history = lag_histories.watch(group_id)
            try:
                while True:
                    lag = total_lag(services, group_id)
                    lag_histories.sample(history, lag, time.monotonic())
                    svg = lag_sparkline([v for _, v in history.points])
                    yield f"event: lag\ndata: {lag}\n\n"
                    # One data line: an event's data ends at a newline.
                    yield "event: history\ndata: " + str(svg).replace("\n", " ") + "\n\n"
                    await anyio.sleep(SAMPLE_INTERVAL_S)
            finally:
                lag_histories.leave(history)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def reset(request: Request) -> Response:
        group_id = request.path_params["group_id"]
        if console.settings.read_only:
            return HTMLResponse('<p class="error">The console is read-only.</p>', status_code=403)
        try:
            form = await form_fields(request)
        except FormError as e:
            return HTMLResponse(f'<p class="error">{escape(str(e))}</p>', status_code=e.status)
        if not allowed(console, request, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            # Not even the group's state is told to whom may not describe it.
            return HTMLResponse(f'<p class="error">{ErrorCode.GROUP_AUTHORIZATION_FAILED.name}</p>', status_code=403)
        topic = str(form.get("topic", "")).strip()
        topic = "" if topic in ("*", "all") else topic
        to = str(form.get("to", ""))
        raw = str(form.get("value", "")).strip()
        if to not in RESET_TARGETS:
            return HTMLResponse(f'<p class="error">Unknown target {escape(to)!s}: use one of '
                                f'{", ".join(RESET_TARGETS)}.</p>', status_code=400)
        value: int | None = None
        if to in ("offset", "timestamp"):
            try:
                value = int(raw)
            except ValueError:
                return HTMLResponse(f'<p class="error">{escape(to)!s} needs an integer value, not '
                                    f'{escape(raw)!r}.</p>', status_code=400)
            if value < 0:
                return HTMLResponse(f'<p class="error">{escape(to)!s} must not be negative.</p>', status_code=400)
        try:
            done = await reset_offsets(console, principal_of(request), group_id, topic, to, value)
        except ResetRefused as e:
            return HTMLResponse(f'<p class="error" id="reset-error">{escape(e.message)}</p>', status_code=e.status)
        items = "".join(f"<li>{escape(tp.topic)}-{tp.partition}: {o}</li>" for tp, o in sorted(done.items()))
        # The offsets table comes along, swapped out of band: the page shows the new offsets at once.
        kind = group_type(services, group_id)
        members = members_of(services, group_id, kind)[2] if kind in ("classic", "consumer") else []
        table = console.templates.get_template("group_offsets.html").render(
            offsets=offset_rows(console, request, group_id, members), oob=True)
        return HTMLResponse(f'<div class="ok" id="reset-done">Offsets reset.<ul>{items}</ul></div>{table}')

    async def share_groups_page(request: Request) -> Response:
        rows, hidden, error = listing(request, {"share"})
        return console.render(request, "share_groups.html", groups=rows, hidden=hidden, error=error,
                              q=request.query_params.get("q", ""))

    async def share_group_page(request: Request) -> Response:
        group_id = request.path_params["group_id"]
        if not allowed(console, request, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            return denied(request, group_id)
        if group_type(services, group_id) != "share":
            return not_found(request, f"Share group {group_id} not found.")
        desc = services.share_groups.describe(group_id)
        return console.render(request, "share_group.html", group=desc)

    return [
        Route("/groups", groups_page, methods=["GET"]),
        # Group ids may hold "/" (Kafka allows any string): the sub-pages are matched first.
        Route("/groups/{group_id:path}/lag/stream", lag_stream, methods=["GET"]),
        Route("/groups/{group_id:path}/reset-offsets", reset, methods=["POST"]),
        Route("/groups/{group_id:path}", group_page, methods=["GET"]),
        Route("/share-groups", share_groups_page, methods=["GET"]),
        Route("/share-groups/{group_id:path}", share_group_page, methods=["GET"]),
    ]
