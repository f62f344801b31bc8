#!/usr/bin/env python3
"""Convert Apache Kafka's official message specs into kbroker's schema format.

The official specs are JSON-with-comments files, one per message; they ship inside
the kafka-python package (``kafka/protocol/schemas/resources``). This tool keeps the
facts (names, types, version ranges, nullability, tags, defaults), drops the prose,
inlines common structs, widens version floors to what Kafka 3.x still accepted
(see ``VERSION_FLOORS``) and writes ``protocol/messages/<Name>.json``.

Usage: python tools/convert_specs.py [SPEC_DIR ...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "protocol" / "messages"

#: Older versions Kafka 3.x accepted that 4.x dropped, kept so older clients
#: (kafka-python 2.x, Debian's kcat, sarama) still work. Only APIs whose old
#: versions carry no pre-magic-2 record formats are widened (Produce v0-2 and
#: Fetch v0-3 carry magic 0/1 message sets and stay out).
VERSION_FLOORS = {
    "ListOffsets": 0,
    "OffsetCommit": 0,
    "OffsetFetch": 0,
    "CreateTopics": 0,
    "DeleteTopics": 0,
    "OffsetForLeaderEpoch": 0,
    "WriteTxnMarkers": 0,
    "DescribeAcls": 0,
    "CreateAcls": 0,
    "DeleteAcls": 0,
    "DescribeConfigs": 0,
    "AlterReplicaLogDirs": 0,
    "DescribeLogDirs": 0,
}

_COMMENT = re.compile(r"^\s*//.*$", re.M)
_KEEP = ("name", "type", "versions", "nullableVersions", "taggedVersions", "tag", "default", "flexibleVersions")
_RENAME = {
    "nullableVersions": "nullable_versions",
    "taggedVersions": "tagged_versions",
    "flexibleVersions": "flexible_versions",
}


def load_spec(path: Path) -> dict[str, Any]:
    """Read one official spec, stripping its line comments."""
    return json.loads(_COMMENT.sub("", path.read_text()))


def _convert_fields(fields: list[dict[str, Any]], common: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for f in fields:
        g: dict[str, Any] = {_RENAME.get(k, k): f[k] for k in _KEEP if k in f}
        inner = f.get("fields")
        struct = f["type"][2:] if f["type"].startswith("[]") else f["type"]
        if inner is None and struct in common:
            inner = common[struct]
        if inner is not None:
            g["fields"] = _convert_fields(inner, common)
        out.append(g)
    return out


def convert(spec: dict[str, Any]) -> dict[str, Any]:
    """Turn one official spec into our schema dict."""
    common = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}
    name = spec["name"]
    valid = spec.get("validVersions", "0")
    base = re.sub(r"(Request|Response)$", "", name)
    floor = VERSION_FLOORS.get(base)
    if floor is not None and spec["type"] in ("request", "response"):
        hi = valid.split("-")[-1]
        valid = f"{floor}-{hi}" if hi != str(floor) else hi
    out: dict[str, Any] = {"name": name, "type": spec["type"]}
    if "apiKey" in spec:
        out["api_key"] = spec["apiKey"]
    out["valid_versions"] = valid
    out["flexible_versions"] = spec.get("flexibleVersions", "none")
    out["fields"] = _convert_fields(spec["fields"], common)
    return out


def default_spec_dir() -> Path:
    import kafka.protocol.schemas as schemas  # the installed kafka-python ships the specs

    return Path(schemas.__file__).parent / "resources"


#: Where the client library's error names differ from Kafka's own (Errors.java), Kafka's win.
KAFKA_ERROR_NAMES = {
    -1: "UNKNOWN_SERVER_ERROR",
    0: "NONE",
    6: "NOT_LEADER_OR_FOLLOWER",
    10: "MESSAGE_TOO_LARGE",
    17: "INVALID_TOPIC_EXCEPTION",
    39: "INVALID_REPLICA_ASSIGNMENT",
}


def write_error_table() -> int:
    """Write protocol/errors.json (code, name, retriable, message) from the installed client's error classes."""
    import inspect

    import kafka.errors as kerr

    rows = []
    seen: set[int] = set()
    for _, cls in inspect.getmembers(kerr, inspect.isclass):
        # Some classes are exported under two names: keep one row per code.
        if issubclass(cls, kerr.BrokerResponseError) and cls is not kerr.BrokerResponseError \
                and cls.errno is not None and cls.errno not in seen:
            seen.add(cls.errno)
            rows.append({"code": cls.errno, "name": KAFKA_ERROR_NAMES.get(cls.errno, cls.message), "retriable": bool(cls.retriable),
                         "message": cls.description})
    rows.sort(key=lambda r: r["code"])
    (ROOT / "protocol" / "errors.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_error_enum(rows)
    return len(rows)


def write_error_enum(rows: list[dict[str, Any]]) -> None:
    """Mirror errors.json as a static IntEnum so handlers get names a type checker sees."""
    lines = [
        '"""Kafka error codes by name; generated from protocol/errors.json by tools/convert_specs.py."""',
        "",
        "from enum import IntEnum",
        "",
        "",
        "class ErrorCode(IntEnum):",
        '    """Every Kafka error code as on the wire."""',
        "",
    ]
    lines += [f"    {r['name']} = {r['code']}" for r in rows]
    (ROOT / "kbroker" / "codec" / "error_codes.py").write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or [default_spec_dir()]
    OUT.mkdir(parents=True, exist_ok=True)
    n = 0
    for d in dirs:
        for path in sorted(d.glob("*.json")):
            schema = convert(load_spec(path))
            (OUT / f"{schema['name']}.json").write_text(json.dumps(schema, indent=1) + "\n")
            n += 1
    print(f"wrote {n} schemas to {OUT} and {write_error_table()} error codes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
