"""Turn two decoded responses into comparable plain data and list where they differ.

Only what must differ between two independent brokers is masked or dropped, each listed
here by field name (snake_case, as the codec names them):

* dropped: ``throttle_time_ms`` (quota bookkeeping), ``host``/``port`` (each broker's own
  listener), ``cluster_id``, ``error_message`` (free text; the sibling ``error_code`` is compared,
  and the messages are shown beside a differing code);
* masked to ``"<set>"`` unless they hold their "none" value (-1, 0, null, "" or the zero
  uuid), so present-versus-absent still counts: topic ids, member ids, producer ids, fetch
  session ids, the broker-chosen log-append time and a transaction's start time;
* record data is compared as decoded batches (offsets, record count, keys, values, headers,
  timestamps of records the request chose) without CRC, producer id or append time; the
  timestamps of control records (transaction markers, which each broker stamps with its own
  clock) are masked too.

* masked the same way: a log dir's path and its volume's total and usable bytes (DescribeLogDirs:
  each broker has its own directory, on a volume whose free space changes all the time);

ListGroups answers keep only groups this tool made (names starting ``wd-``), ListConfigResources
answers only its topics and groups (and the internal topics and the brokers), and
DescribeTopicPartitions answers only its topics, the internal ones (``__`` names) and topics
answered with an error: a reference Kafka shared with other tests serves their groups and
topics too. DescribeLogDirs answers keep only the topics of DescribeLogDirs' own cases
(``wd-35-``): a request for every partition lists the topics of every other case too, whose
sizes each follow their own API's accepted differences.

Lists whose elements carry an identity field (a name, a partition index, an API key ...), or
a resource type and name together, are matched by that identity, so Kafka's order of topics, partitions, configs or groups is not
significant; other lists are compared by position.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ABSENT = "<absent>"
SET = "<set>"

#: Dropped before comparing (see the module docstring for why each may differ).
DROPPED = frozenset({"throttle_time_ms", "host", "port", "cluster_id", "error_message"})
#: Masked to SET when not their "none" value.
MASKED = frozenset({"topic_id", "member_id", "leader", "producer_id", "session_id", "log_append_time_ms",
                    "leader_id_and_epoch_member_id", "assigned_member_id", "transaction_start_time_ms",
                    "log_dir", "total_bytes", "usable_bytes"})
#: Fields naming an element of a list, most specific first; the first one present is its identity.
IDENTITY = ("api_key", "name", "topic", "topic_name", "resource_name", "group_id", "partition_index",
            "partition", "index", "offset", "key", "broker_id", "node_id", "config_name", "transactional_id",
            "error_code")
#: Fields holding record batches.
RECORDS = frozenset({"records"})


@dataclass(frozen=True)
class Difference:
    """One differing value: where, and what each broker said."""

    path: str
    kafka: Any
    kbroker: Any
    note: str = ""

    def render(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return f"{self.path}: kafka={_short(self.kafka)} kbroker={_short(self.kbroker)}{extra}"


def _short(v: Any, limit: int = 160) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _none_value(v: Any) -> bool:
    return v in (None, -1, 0, "") or (isinstance(v, uuid.UUID) and v.int == 0)


def plain(value: Any) -> Any:
    """A decoded codec value as plain dicts, lists, ints, strings (Containers become dicts)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def summarize_records(data: bytes | None) -> Any:
    """Record batches as the fields two brokers must agree on; raw hex when undecodable."""
    if data is None:
        return None
    from kbroker.records.batch import iter_headers
    from kbroker.records.record import iter_records

    out = []
    mv = memoryview(data)
    try:
        for pos, h in iter_headers(mv):
            recs = [{"offset": r.offset, "key": r.key, "value": r.value,
                     "headers": [list(x) for x in r.headers],
                     "timestamp": SET if h.log_append_time or h.is_control else r.timestamp}
                    for r in iter_records(mv[pos:pos + h.size])]
            out.append({"base_offset": h.base_offset, "last_offset_delta": h.last_offset_delta,
                        "magic": h.magic, "compression": h.compression, "record_count": h.record_count,
                        "transactional": h.is_transactional, "control": h.is_control, "records": recs})
    except Exception as e:  # a partial trailing batch or garbage: compare what is there
        out.append({"undecodable": f"{type(e).__name__}", "bytes": len(data)})
    return out


def normalize(value: Any) -> Any:
    """Apply the drop/mask/records rules recursively to plain data."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in DROPPED:
                continue
            if k in MASKED:
                out[k] = v if _none_value(v) else SET
            elif k in RECORDS and (v is None or isinstance(v, (bytes, bytearray))):
                out[k] = summarize_records(bytes(v) if v is not None else None)
            else:
                out[k] = normalize(v)
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def identity_of(*sides: Sequence[Any]) -> str | None:
    """The identity field every element of every list carries, unique within each list."""
    elements = [e for side in sides for e in side]
    if not elements or not all(isinstance(e, dict) for e in elements):
        return None
    for key in IDENTITY:
        if all(key in e for e in elements) and all(
                len({_hashable(e[key]) for e in side}) == len(side) for side in sides):
            return key
    return None


def _unique_by(keys: tuple[str, ...], *sides: Sequence[Any]) -> bool:
    """Whether every element of every list is a dict holding ``keys``, unique together per list."""
    elements = [e for side in sides for e in side]
    if not elements or not all(isinstance(e, dict) and all(k in e for k in keys) for e in elements):
        return False
    return all(len({tuple(_hashable(e[k]) for k in keys) for e in side}) == len(side) for side in sides)


def _hashable(v: Any) -> Any:
    return repr(v) if isinstance(v, (dict, list)) else v


def diff(kafka: Any, kbroker: Any, path: str = "",
         context: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)) -> list[Difference]:
    """Every difference between two normalised values (``path`` names where, e.g. ``topics[name=t].error_code``)."""
    if isinstance(kafka, dict) and isinstance(kbroker, dict):
        out: list[Difference] = []
        for k in list(kafka) + [k for k in kbroker if k not in kafka]:
            a, b = kafka.get(k, ABSENT), kbroker.get(k, ABSENT)
            sub = diff(a, b, f"{path}.{k}" if path else k, (kafka, kbroker))
            out.extend(sub)
        return out
    if isinstance(kafka, list) and isinstance(kbroker, list):
        key = identity_of(kafka, kbroker)
        pair = ("resource_type", "resource_name")
        if key is None and _unique_by(pair, kafka, kbroker):
            # Config resources (ListConfigResources): a broker and its logger share a name.
            left = {(e[pair[0]], e[pair[1]]): e for e in kafka}
            right = {(e[pair[0]], e[pair[1]]): e for e in kbroker}
            out = []
            for ident in list(left) + [i for i in right if i not in left]:
                out.extend(diff(left.get(ident, ABSENT), right.get(ident, ABSENT),
                                f"{path}[resource={ident[0]}:{ident[1]}]"))
            return out
        if key is not None:
            left = {_hashable(e[key]): e for e in kafka}
            right = {_hashable(e[key]): e for e in kbroker}
            out = []
            for ident in list(left) + [i for i in right if i not in left]:
                out.extend(diff(left.get(ident, ABSENT), right.get(ident, ABSENT), f"{path}[{key}={ident}]"))
            return out
        out = []
        for i in range(max(len(kafka), len(kbroker))):
            a = kafka[i] if i < len(kafka) else ABSENT
            b = kbroker[i] if i < len(kbroker) else ABSENT
            out.extend(diff(a, b, f"{path}[{i}]"))
        return out
    if kafka == kbroker:
        return []
    note = ""
    if path.endswith("error_code"):
        msgs = [c.get("error_message") if c is not None else None for c in context]
        if any(msgs):
            note = f"messages: kafka={msgs[0]!r} kbroker={msgs[1]!r}"
    return [Difference(path, kafka, kbroker, note)]


#: Name prefix of every topic and group the catalog makes.
OWN_PREFIX = "wd-"
LIST_GROUPS = 16
DESCRIBE_LOG_DIRS = 35
DESCRIBE_TOPIC_PARTITIONS = 75
LIST_CONFIG_RESOURCES = 74
TOPIC_RESOURCE, GROUP_RESOURCE = 2, 32


def own_only(api_key: int, body: Any) -> Any:
    """``body`` without entries another user of the broker made (see the module docstring)."""
    if api_key == LIST_GROUPS and isinstance(body, dict) and isinstance(body.get("groups"), list):
        body = dict(body, groups=[g for g in body["groups"] if str(g.get("group_id", "")).startswith(OWN_PREFIX)])
    if api_key == DESCRIBE_TOPIC_PARTITIONS and isinstance(body, dict) and isinstance(body.get("topics"), list):
        body = dict(body, topics=[t for t in body["topics"] if t.get("error_code")
                                  or str(t.get("name", "")).startswith((OWN_PREFIX, "__"))])
    if api_key == LIST_CONFIG_RESOURCES and isinstance(body, dict) and isinstance(body.get("config_resources"), list):
        # Topics and groups other users made; brokers and internal topics are the broker's own.
        body = dict(body, config_resources=[
            r for r in body["config_resources"] if r.get("resource_type") not in (TOPIC_RESOURCE, GROUP_RESOURCE)
            or str(r.get("resource_name", "")).startswith((OWN_PREFIX, "__"))])
    if api_key == DESCRIBE_LOG_DIRS and isinstance(body, dict) and isinstance(body.get("results"), list):
        body = dict(body, results=[
            dict(r, topics=[t for t in r.get("topics") or [] if str(t.get("name", "")).startswith(f"{OWN_PREFIX}35-")])
            for r in body["results"]])
    return body


def compare_bodies(kafka_body: Any, kbroker_body: Any, api_key: int | None = None) -> list[Difference]:
    """Differences between two decoded response bodies, error messages kept as notes."""
    a, b = plain(kafka_body), plain(kbroker_body)
    if api_key is not None:
        a, b = own_only(api_key, a), own_only(api_key, b)
    return diff(_keep_messages(a), _keep_messages(b))


def _keep_messages(value: Any) -> Any:
    """Normalise, but let each dict remember its dropped ``error_message`` for the notes."""
    if isinstance(value, dict):
        out = normalize(value)
        for k, v in out.items():
            if isinstance(v, (dict, list)) and k not in RECORDS:
                out[k] = _keep_messages(value[k])
        return _MsgDict(out, value.get("error_message"))
    if isinstance(value, list):
        return [_keep_messages(v) for v in value]
    return normalize(value)


class _MsgDict(dict):  # type: ignore[type-arg]
    """A normalised dict that remembers the dropped ``error_message`` for notes."""

    def __init__(self, data: dict[str, Any], message: Any) -> None:
        super().__init__(data)
        self.message = message

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key == "error_message":
            return self.message
        return super().get(key, default)
