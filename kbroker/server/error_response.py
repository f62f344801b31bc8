"""The response Kafka gives when a whole request fails with one error (its requests'
``getErrorResponse``), built for any API from the response schema and the request.

Kafka's rule, which each request class spells out by hand: the error goes in the top-level
``error_code`` when the version has one, and in every entry the response has for what the
request named (each topic, partition, group, resource...), keyed as the request keyed it.
Some answer with the top level alone: Fetch from v13, OffsetFetch v2 to v7, AddPartitionsToTxn
from v4, ShareFetch and ShareAcknowledge.
Everything else takes the schema's default, except offsets and watermarks, which Kafka
reports as -1 (unknown) in an error response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kbroker.codec.apis import api_table
from kbroker.codec.schema import FieldSpec

#: (API key, lowest version, highest version) whose error response has only the top-level code.
_TOP_LEVEL_ONLY = ((1, 13, 32767), (9, 2, 7), (24, 4, 32767), (78, 0, 32767), (79, 0, 32767))
#: The fields that hold an entry's error (AddPartitionsToTxn names its partitions' so).
_ERROR_FIELDS = frozenset({"error_code", "partition_error_code"})
#: Names a key field takes in requests and responses; a response key is filled from any of its group.
_KEY_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"name", "topic", "topic_name"}),
    frozenset({"partition_index", "partition", "index", "partition_id"}),
)
#: Fields copied from the request entry when the response entry has them under the same name.
_KEYS = frozenset({"name", "topic", "topic_name", "topic_id", "partition_index", "partition", "index",
                   "partition_id", "group_id", "resource_type", "resource_name", "transactional_id",
                   "key", "key_type", "entity_type", "entity_name", "member_id", "group_instance_id"})
#: At the top level: a fetch session's id is kept (as Kafka does); a member id is not (a refused
#: JoinGroup answers the unknown member id, "").
_TOP_KEYS = (_KEYS - {"member_id", "group_instance_id"}) | {"session_id"}
#: The request arrays a response array answers, when their names differ (Produce, Fetch, ...).
_PREFERRED = ("topics", "topic_data", "partition_data", "partitions", "resources", "groups")


def error_response(api_key: int, version: int, request: Mapping[str, Any], error_code: int) -> dict[str, Any]:
    """The body answering ``request`` (decoded, of ``api_key`` at ``version``) with ``error_code``
    as Kafka's ``getErrorResponse`` does; fields not set take their schema defaults when encoded."""
    fields = api_table()[api_key].response.fields
    body = {"throttle_time_ms": 0} if any(f.attr == "throttle_time_ms" for f in fields) else {}
    top_only = any(k == api_key and lo <= version <= hi for k, lo, hi in _TOP_LEVEL_ONLY)
    has_top = any(f.attr == "error_code" and version in f.versions for f in fields)
    if top_only and has_top:
        body["error_code"] = error_code
        _copy_keys(fields, version, request, body, _TOP_KEYS)
        return body
    body.update(_entry(fields, version, request, error_code, _TOP_KEYS))
    return body


def _entry(fields: Sequence[FieldSpec], version: int, source: Any, code: int,
           keys: frozenset[str] = _KEYS) -> dict[str, Any]:
    """One response struct answering ``source`` (a request struct, or a bare name or index)."""
    out: dict[str, Any] = {}
    present = [f for f in fields if version in f.versions]
    for f in present:
        if f.attr in _ERROR_FIELDS:
            out[f.attr] = code
        elif f.is_array and f.is_struct:
            if _carries_error(f, version) and isinstance(source, Mapping):
                out[f.attr] = [_entry(f.fields or (), version, item, code) for item in _answered(f.attr, source)]
        elif f.type == "int64" and _unknown_offset(f):
            out[f.attr] = -1
        elif f.type == "records":
            out[f.attr] = b""
    if isinstance(source, Mapping):
        _copy_keys(present, version, source, out, keys)
    elif isinstance(source, (str, int)) and not isinstance(source, bool):
        # A request array of bare names or indexes (DeleteTopics v0-5, OffsetFetch's partitions):
        # the entry's first key field of that type takes it.
        wanted = ("string",) if isinstance(source, str) else ("int32", "int16", "int8")
        for f in present:
            if f.type in wanted and f.attr in _KEYS:
                out[f.attr] = source
                break
    return out


def _copy_keys(fields: Sequence[FieldSpec], version: int, source: Mapping[str, Any], out: dict[str, Any],
               keys: frozenset[str]) -> None:
    """Fill the response's key fields from the request's (a topic's name, a partition's index)."""
    for f in fields:
        if version not in f.versions or f.attr not in keys or f.is_array or f.attr in out:
            continue
        if f.attr in source:
            out[f.attr] = source[f.attr]
            continue
        for group in _KEY_GROUPS:
            if f.attr in group:
                for alias in group:
                    if alias in source and not isinstance(source[alias], (list, Mapping)):
                        out[f.attr] = source[alias]
                        break


def _carries_error(f: FieldSpec, version: int) -> bool:
    """Whether an array's entries hold an error code, at any depth (results, not lists of brokers)."""
    for g in f.fields or ():
        if version not in g.versions:
            continue
        if g.attr in _ERROR_FIELDS or (g.is_array and g.is_struct and _carries_error(g, version)):
            return True
    return False


def _answered(attr: str, source: Mapping[str, Any]) -> list[Any]:
    """The request array that response array ``attr`` answers, entry for entry."""
    arrays = {k: v for k, v in source.items() if isinstance(v, list)}
    if attr in arrays:
        return list(arrays[attr])
    if len(arrays) == 1:
        return list(next(iter(arrays.values())))
    for name in _PREFERRED:
        if name in arrays:
            return list(arrays[name])
    return []


def _unknown_offset(f: FieldSpec) -> bool:
    """An offset or watermark without a schema default: Kafka answers -1 in an error response."""
    name = f.attr
    return ("offset" in name or "watermark" in name) and f.default in (None, "", 0, "0")
