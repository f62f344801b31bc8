"""Our protocol/ schemas agree with the official Kafka specs shipped in kafka-python."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from codec_helpers import kp_resources

from kbroker.codec.schema import (
    KBROKER_TAG_FLOOR,
    SCHEMA_DIR,
    FieldSpec,
    all_messages,
    kbroker_extensions,
    load_message,
)
from kbroker.codec.versions import VersionRange

_COMMENT = re.compile(r"^\s*//.*$", re.M)
OFFICIAL = sorted(p for p in kp_resources().glob("*.json"))


def load_official(path: Path) -> dict[str, Any]:
    """An official spec with its comments stripped and its common structs inlined."""
    spec = json.loads(_COMMENT.sub("", path.read_text()))
    common = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}

    def resolve(fields: list[dict[str, Any]]) -> None:
        for f in fields:
            t = f["type"][2:] if f["type"].startswith("[]") else f["type"]
            if "fields" not in f and t in common:
                f["fields"] = json.loads(json.dumps(common[t]))
            if "fields" in f:
                resolve(f["fields"])

    resolve(spec["fields"])
    return spec


def rng(text: str | None) -> VersionRange:
    return VersionRange.parse(text)


def official_view(fields: list[dict[str, Any]], v: int, path: str = "") -> list[tuple[Any, ...]]:
    """The facts that decide the wire format of ``fields`` at version ``v``, flattened."""
    out: list[tuple[Any, ...]] = []
    for f in fields:
        if v not in rng(f.get("versions")):
            continue
        name = f"{path}{f['name']}"
        tagged = v in rng(f.get("taggedVersions"))
        flex = f.get("flexibleVersions")
        out.append((name, f["type"], v in rng(f.get("nullableVersions")), tagged,
                    f.get("tag") if tagged else None, None if flex is None else v in rng(flex),
                    _norm_default(f.get("default"))))
        if "fields" in f:
            out.extend(official_view(f["fields"], v, name + "."))
    return out


def our_view(fields: tuple[FieldSpec, ...], v: int, path: str = "") -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for f in fields:
        if v not in f.versions:
            continue
        name = f"{path}{f.name}"
        tagged = v in f.tagged
        out.append((name, f.type, v in f.nullable, tagged, f.tag if tagged else None,
                    None if f.flexible is None else v in f.flexible, _norm_default(f.default)))
        if f.fields is not None:
            out.extend(our_view(f.fields, v, name + "."))
    return out


def _norm_default(d: Any) -> Any:
    return None if d is None else str(d)


@pytest.mark.parametrize("path", OFFICIAL, ids=[p.stem for p in OFFICIAL])
def test_schema_matches_official(path: Path) -> None:
    official = load_official(path)
    name = official["name"]
    ours_file = SCHEMA_DIR / "messages" / f"{name}.json"
    assert ours_file.exists(), f"protocol/messages has no {name}.json"
    ours = load_message(name, extensions=False)  # kbroker's own tagged fields: checked below
    assert ours.type == official["type"], f"{name}: type {ours.type} != {official['type']}"
    assert ours.api_key == official.get("apiKey"), f"{name}: apiKey"
    off_valid = rng(official["validVersions"])
    assert ours.valid.low <= off_valid.low and off_valid.high == ours.valid.high, (
        f"{name}: our validVersions {ours.valid} must contain the official {off_valid} and end with it")
    off_flex = rng(official.get("flexibleVersions"))
    mismatches = []
    for v in range(off_valid.low, off_valid.high + 1):
        if (v in ours.flexible) != (v in off_flex):
            mismatches.append(f"v{v}: flexible {v in ours.flexible} != official {v in off_flex}")
        a, b = our_view(ours.fields, v), official_view(official["fields"], v)
        if a != b:
            only_ours = [x for x in a if x not in b]
            only_official = [x for x in b if x not in a]
            mismatches.append(f"v{v}: ours has {only_ours}, official has {only_official}"
                              if only_ours or only_official else f"v{v}: field order differs")
    assert not mismatches, f"{name} disagrees with the official spec:\n  " + "\n  ".join(mismatches[:10])


SHARE_APIS = ("ShareGroupHeartbeat", "ShareGroupDescribe", "ShareFetch", "ShareAcknowledge",
              "DescribeShareGroupOffsets", "AlterShareGroupOffsets", "DeleteShareGroupOffsets")


def test_every_schema_is_official_or_known_hand_written() -> None:
    official = {p.stem for p in OFFICIAL}
    hand_written = set(all_messages()) - official
    assert hand_written == {
        f"{api}{kind}" for api in ("ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "GetTelemetrySubscriptions",
                                   # KIP-932, converted from Kafka 4.1's specs (kafka-python has none)
                                   *SHARE_APIS)
        for kind in ("Request", "Response")
    }


@pytest.mark.parametrize("name", ["ConsumerGroupHeartbeat", "ConsumerGroupDescribe", "GetTelemetrySubscriptions"])
def test_hand_written_schemas_are_well_formed(name: str) -> None:
    req, resp = load_message(name + "Request"), load_message(name + "Response")
    assert req.api_key == resp.api_key is not None
    assert req.valid == resp.valid and req.flexible == resp.flexible
    assert req.valid.low in req.flexible  # all three APIs are flexible from v0

    def check(fields: tuple[FieldSpec, ...], path: str) -> None:
        tags = [f.tag for f in fields if f.tag is not None]
        assert len(tags) == len(set(tags)), f"{path}: duplicate tags"
        for f in fields:
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", f.name), f"{path}.{f.name}"
            assert f.element_type in {"int8", "int16", "int32", "int64", "uint16", "float64", "bool", "string",
                                      "bytes", "records", "uuid"} or f.fields, f"{path}.{f.name}: {f.type}"
            assert (f.tag is None) == f.tagged.empty, f"{path}.{f.name}: tag without tagged_versions"
            if f.fields:
                check(f.fields, f"{path}.{f.name}")

    check(req.fields, req.name)
    check(resp.fields, resp.name)


def test_kbroker_extensions_are_high_tagged_fields_of_flexible_versions() -> None:
    """What kbroker adds to Kafka's schemas must be invisible to Kafka clients: tagged fields
    only (skipped by tag and size), tags far from Kafka's, and the rest of the message unmoved."""
    assert kbroker_extensions(), "protocol/extensions.json lists no extension"
    for name in kbroker_extensions():
        plain, extended = load_message(name, extensions=False), load_message(name)
        added_somewhere = False
        for v in range(plain.valid.low, plain.valid.high + 1):
            ours, kafka = our_view(extended.fields, v), our_view(plain.fields, v)
            added = [x for x in ours if x not in kafka]
            # The added field's own sub-fields are inside its tagged value; its top entry is tagged.
            tops = [x for x in added if not any(x[0].startswith(y[0] + ".") for y in added)]
            for field_name, _type, _nullable, tagged, tag, _flex, _default in tops:
                assert tagged and tag is not None and tag >= KBROKER_TAG_FLOOR, f"{name} v{v}: {field_name}"
                assert v in plain.flexible, f"{name} v{v}: {field_name} in a version without tagged fields"
            assert [x for x in ours if x not in added] == kafka, f"{name} v{v}: Kafka's fields moved"
            added_somewhere = added_somewhere or bool(added)
        assert added_somewhere, f"{name}: the extension adds nothing"


#: Kafka 4.x error codes kafka-python does not know yet: (name, retriable), as Kafka's Errors.java.
NEWER_THAN_KAFKA_PYTHON = {128: ("INVALID_REGULAR_EXPRESSION", False)}


def test_errors_json_matches_kafka_errors() -> None:
    import inspect

    import kafka.errors as kerr

    from tools.convert_specs import KAFKA_ERROR_NAMES

    rows = json.loads((SCHEMA_DIR / "errors.json").read_text())
    ours = {r["code"]: (r["name"], r["retriable"]) for r in rows}
    for r in rows:  # a repeated code must at least repeat the same row
        assert (r["name"], r["retriable"]) == ours[r["code"]], r
    theirs: dict[int, tuple[str, bool]] = {}
    for _, cls in inspect.getmembers(kerr, inspect.isclass):
        if issubclass(cls, kerr.BrokerResponseError) and cls.errno is not None:
            theirs[cls.errno] = (KAFKA_ERROR_NAMES.get(cls.errno, cls.message), bool(cls.retriable))
    # Codes Kafka added after the kafka-python release the tests pin.
    theirs.update({c: v for c, v in NEWER_THAN_KAFKA_PYTHON.items() if c not in theirs})
    diff = {c: (ours.get(c), theirs.get(c)) for c in set(ours) | set(theirs) if ours.get(c) != theirs.get(c)}
    assert not diff, f"errors.json vs kafka.errors (code: ours, theirs): {diff}"
    for r in rows:
        assert set(r) == {"code", "name", "retriable", "message"}
        assert isinstance(r["code"], int) and isinstance(r["retriable"], bool)
        assert r["message"] is None or isinstance(r["message"], str)


def test_errors_json_codes_are_unique() -> None:
    codes = [r["code"] for r in json.loads((SCHEMA_DIR / "errors.json").read_text())]
    assert len(codes) == len(set(codes)), sorted(c for c in set(codes) if codes.count(c) > 1)


def test_error_code_enum_matches_errors_json() -> None:
    from kbroker.codec.error_codes import ErrorCode

    rows = json.loads((SCHEMA_DIR / "errors.json").read_text())
    assert {r["name"]: r["code"] for r in rows} == {e.name: e.value for e in ErrorCode}
