"""``kbroker trace`` on files that are not (only) recordings: lines of JSON of another shape,
bytes that are not UTF-8, a last line cut short. Each such line is warned about; the rest shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbroker.cli import main

GOOD = {"event": "request", "time": "2026-01-01T10:00:00.000Z", "conn": 1, "client": "h:1", "client_id": "c",
        "api": "Metadata", "api_key": 3, "version": 12, "correlation_id": 1, "latency_ms": 0.5,
        "request_size": 10, "response_size": 20, "outcome": "response", "topics": ["t"], "errors": []}


@pytest.mark.parametrize("argv", [(), ("--topic", "t"), ("--errors",), ("--json",)])
def test_lines_of_another_shape_are_warned_about_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           argv: tuple[str, ...]) -> None:
    path = tmp_path / "odd.jsonl"
    odd = [dict(GOOD, latency_ms="slow"), dict(GOOD, topics=5, errors="abc"), dict(GOOD, errors=[1, 2])]
    with path.open("wb") as f:
        f.write(b"\xff\xfe\x00 not text\n")
        for line in odd:
            f.write(json.dumps(line).encode() + b"\n")
        f.write(json.dumps(GOOD).encode() + b"\n")
        f.write(json.dumps(GOOD)[:40].encode())  # the last line cut short (the broker was killed)
    code = main(["trace", str(path), *argv])
    out, err = capsys.readouterr()
    assert code == 1
    assert "line 1 of" in err and "line 6 of" in err
    shown = out.count("Metadata v12") + out.count('"Metadata"')
    # The good line shows (it has no error); --json passes every object on as it is.
    assert shown == (0 if "--errors" in argv else 4 if "--json" in argv else 1)
    assert "Traceback" not in err
