"""tools.bench.console end to end on a tiny cell: both sides measured, the viewers got events."""

from __future__ import annotations

import re

import pytest

from tools.bench import console


@pytest.mark.integration
@pytest.mark.parametrize("mode", [["--one-broker"], []], ids=["one-broker", "two-brokers"])
def test_a_tiny_run_measures_both_sides_while_the_pages_stream(mode: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc = console.main([*mode, "--rounds", "1", "--cells", "confluent.1024B.acks=1.p1",
                       "--produce-count", "2000", "--produce-seconds", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    events = {k: int(v) for k, v in re.findall(r"'(/[^']*)': (\d+)", out)}
    assert set(events) == {"/", "/groups/bench-console-group"} and all(events.values()), out
    rows = re.findall(r"^\| (\w+\.confluent\.1024B\.acks=1\.p1) \| ([\d,]+) \| ([\d,]+) \|", out, re.M)
    assert sorted(r[0] for r in rows) == ["consume.confluent.1024B.acks=1.p1", "produce.confluent.1024B.acks=1.p1"]
    assert all(int(off.replace(",", "")) > 0 and int(on.replace(",", "")) > 0 for _, off, on in rows), out


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(SystemExit) as e:
        console.main(["--rounds", "x"])
    assert e.value.code == 2
