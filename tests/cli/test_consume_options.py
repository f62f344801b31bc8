"""``kbroker produce``/``consume``: headers, tombstones, output formats, start positions, timestamp types."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from kbroker.cli.progress import Progress

Runner = Any  # the `cli` fixture from conftest.py


def _topic(cli: Runner, name: str, partitions: int = 1, *configs: str) -> None:
    extra = [a for c in configs for a in ("--config", c)]
    r = cli("topics", "--create", "--topic", name, "--partitions", str(partitions), *extra)
    assert r.code == 0, r.err


def test_headers_from_options_and_lines(cli: Runner) -> None:
    _topic(cli, "h")
    r = cli("produce", "--topic", "h", "-H", "app=cli", "--header", "flag", "--property", "parse.headers=true",
            "--property", "parse.key=true", stdin="trace:1,user:ann\tk1\tv1\nempty:\tk2\tv2\n")
    assert r.code == 0, r.err
    r = cli("consume", "--topic", "h", "--from-beginning", "--max-messages", "2",
            "--property", "print.headers=true", "--property", "print.key=true")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["app:cli,flag:null,trace:1,user:ann\tk1\tv1", "app:cli,flag:null,empty:\tk2\tv2"]
    r = cli("consume", "--topic", "h", "--offset", "earliest", "--max-messages", "1", "--format", r"%k=%s [%h]\n")
    assert r.out == "k1=v1 [app=cli,flag=,trace=1,user=ann]\n"
    r = cli("consume", "--topic", "h", "--offset", "earliest", "--max-messages", "1", "--json")
    obj = json.loads(r.out)
    assert obj["headers"] == ["app", "cli", "flag", None, "trace", "1", "user", "ann"]
    assert (obj["topic"], obj["partition"], obj["offset"], obj["key"], obj["payload"]) == ("h", 0, 0, "k1", "v1")
    assert obj["tstype"] == "create" and abs(obj["ts"] - time.time() * 1000) < 60_000


def test_records_without_headers(cli: Runner) -> None:
    _topic(cli, "nh")
    assert cli("produce", "--topic", "nh", stdin="plain\n").code == 0
    r = cli("consume", "--topic", "nh", "--from-beginning", "--max-messages", "1", "--property", "print.headers=true",
            "--property", "print.value=false", "--property", "print.offset=true")
    assert r.out == "Offset:0\tNO_HEADERS\n"


def test_tombstones(cli: Runner) -> None:
    _topic(cli, "t")
    assert cli("produce", "--topic", "t", "--property", "parse.key=true", "-Z", stdin="a\t\nb\tx\n").code == 0
    assert cli("produce", "--topic", "t", "--property", "parse.key=true", "--property", "null.marker=<null>",
               stdin="c\t<null>\n<null>\tkeyless\n").code == 0
    r = cli("consume", "--topic", "t", "--from-beginning", "-e", "--json")
    got = [(o["key"], o["payload"]) for o in map(json.loads, r.out.splitlines())]
    assert got == [("a", None), ("b", "x"), ("c", None), (None, "keyless")]
    r = cli("consume", "--topic", "t", "--from-beginning", "-e", "--format", r"%K %S|%k|%s\n")
    assert r.out.splitlines() == ["1 -1|a|", "1 1|b|x", "1 -1|c|", "-1 7||keyless"]
    r = cli("consume", "--topic", "t", "--from-beginning", "-e", "--property", "print.key=true",
            "--property", "null.literal=NULL")
    assert r.out.splitlines() == ["a\tNULL", "b\tx", "c\tNULL", "NULL\tkeyless"]


def test_timestamps_print_their_type(cli: Runner) -> None:
    _topic(cli, "ct")
    _topic(cli, "lat", 1, "message.timestamp.type=LogAppendTime")
    for topic in ("ct", "lat"):
        assert cli("produce", "--topic", topic, stdin="x\n").code == 0
    r = cli("consume", "--topic", "ct", "--from-beginning", "-e", "--property", "print.timestamp=true")
    assert r.out.startswith("CreateTime:") and r.out.endswith("\tx\n")
    r = cli("consume", "--topic", "lat", "--from-beginning", "-e", "--property", "print.timestamp=true")
    assert r.out.startswith("LogAppendTime:") and r.out.endswith("\tx\n")
    assert json.loads(cli("consume", "--topic", "lat", "--from-beginning", "-e", "--json").out)["tstype"] == "logappend"


def test_start_positions(cli: Runner) -> None:
    _topic(cli, "s", 2)
    for p in (0, 1):
        stdin = "".join(f"v{i}\n" for i in range(p, 10, 2))
        assert cli("produce", "--topic", "s", "--partition", str(p), stdin=stdin).code == 0
    r = cli("consume", "--topic", "s", "--last", "2", "--format", r"%p:%o\n")
    assert r.code == 0, r.err
    assert sorted(r.out.splitlines()) == ["0:3", "0:4", "1:3", "1:4"]
    assert r.err == "Processed a total of 4 messages\n"
    r = cli("consume", "--topic", "s", "--offset", "earliest", "-e")
    assert sorted(r.out.splitlines()) == sorted(f"v{i}" for i in range(10))
    r = cli("consume", "--topic", "s", "--last", "100", "--partition", "1", "--format", r"%o ")
    assert r.out == "0 1 2 3 4 "
    r = cli("consume", "--topic", "s", "--last", "0", "--format", r"%o ")  # nothing, and it still ends
    assert (r.code, r.out) == (0, "")
    # A timestamp after the first batch: only the records written after it.
    time.sleep(0.01)
    cut = int(time.time() * 1000)
    time.sleep(0.01)
    assert cli("produce", "--topic", "s", "--partition", "0", stdin="late\n").code == 0
    r = cli("consume", "--topic", "s", "--from-timestamp", str(cut), "-e")
    assert r.out == "late\n"
    r = cli("consume", "--topic", "s", "--from-timestamp", "2999-01-01T00:00:00+00:00", "-e")
    assert (r.code, r.out) == (0, "")


def test_follow_keeps_reading_past_the_end(cli: Runner) -> None:
    _topic(cli, "fol")
    assert cli("produce", "--topic", "fol", stdin="a\nb\n").code == 0
    # --last exits at the end; with -f it waits (here until --timeout-ms) for more.
    started = time.monotonic()
    r = cli("consume", "--topic", "fol", "--last", "1", "-f", "--timeout-ms", "400")
    assert (r.out, time.monotonic() - started >= 0.4) == ("b\n", True)


def test_usage_errors(cli: Runner) -> None:
    _topic(cli, "u")
    r = cli("consume", "--topic", "u", "--property", "print.keys=true")
    assert r.code == 1
    assert "unknown property 'print.keys'" in r.err and "print.key, print.offset" in r.err
    r = cli("produce", "--topic", "u", "--property", "parse.keys=true", stdin="x\n")
    assert r.code == 1 and "unknown property 'parse.keys'" in r.err and "parse.key" in r.err
    r = cli("consume", "--topic", "u", "--format", "%z")
    assert r.code == 1 and "unsupported format directive %z" in r.err
    r = cli("consume", "--topic", "u", "--format", "%s", "--property", "print.key=true")
    assert r.code == 1 and "--property applies to the default output" in r.err
    assert cli("consume", "--topic", "u", "--format", "%s", "--json").code == 2
    assert cli("consume", "--topic", "u", "--last", "1", "--from-beginning").code == 2
    assert cli("consume", "--topic", "u", "-f", "-e").code == 2
    r = cli("consume", "--topic", "u", "--from-timestamp", "yesterday")
    assert r.code == 1 and "--from-timestamp 'yesterday'" in r.err
    r = cli("consume", "--topic", "u", "--group", "g", "--partition", "0")
    assert r.code == 1 and "--partition cannot be used with --group" in r.err
    r = cli("produce", "--topic", "u", "--property", "parse.headers=true", stdin="no-delimiter\n")
    assert r.code == 1 and "No headers delimiter found on line number 1" in r.err
    r = cli("produce", "--topic", "u", "--property", "parse.headers=true", "--property", "null.marker=N",
            stdin="N:v\tx\n")
    assert r.code == 1 and "Header keys should not be equal to the null marker 'N'" in r.err
    r = cli("produce", "--topic", "u", "--property", "null.marker=", stdin="x\n")
    assert r.code == 1 and "null.marker must not be empty" in r.err
    r = cli("produce", "--topic", "u", "-H", "=v", stdin="x\n")
    assert r.code == 1 and "header '=v' is not KEY=VALUE" in r.err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal_and_after_a_second() -> None:
    now = [0.0]
    tty = _Tty()
    p = Progress(tty, "Consumed", clock=lambda: now[0])
    p.update(10)
    assert tty.getvalue() == ""  # short runs stay quiet
    now[0] = 2.0
    p.update(500)
    assert tty.getvalue() == "\r\x1b[KConsumed 500 records (250/s)"
    now[0] = 2.1
    p.update(600)  # not due yet
    p.finish()
    assert tty.getvalue().endswith("(250/s)\r\x1b[K")
    plain = io.StringIO()
    q = Progress(plain, "Produced", clock=lambda: now[0])
    now[0] = 10.0
    q.update(5)
    q.finish()
    assert plain.getvalue() == ""
    assert Progress(_Tty(), "Produced", enabled=False).active is False


def test_progress_lines_through_the_commands(cli: Runner, monkeypatch: Any) -> None:
    import kbroker.cli.progress as progress

    monkeypatch.setattr(progress, "FIRST_AFTER", 0.0)
    monkeypatch.setattr(progress, "EVERY", 0.0)
    _topic(cli, "prog")
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)  # records go to a pipe, stderr to a terminal
    assert cli("produce", "--topic", "prog", stdin="".join(f"{i}\n" for i in range(2500))).code == 0
    assert "\r\x1b[KProduced 1000 records (" in tty.getvalue() and "Produced 2000 records" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")  # erased at the end
    r = cli("consume", "--topic", "prog", "--from-beginning", "-e")
    assert len(r.out.splitlines()) == 2500
    assert "\r\x1b[KConsumed " in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[KProcessed a total of 2500 messages\n")


def test_group_on_a_missing_topic(cli: Runner) -> None:
    r = cli("consume", "--topic", "absent", "--group", "g", "--timeout-ms", "100")
    assert r.code == 1 and r.err.startswith("kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: ")


def test_headers_tombstones_and_timestamp_types_cross_with_kafka_python(cli: Runner, kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    _topic(cli, "kp-in", 1, "message.timestamp.type=LogAppendTime")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send("kp-in", key=b"k", value=None, headers=[("trace", b"t1"), ("empty", b"")])
    producer.send("kp-in", key=b"k2", value=b"v2", timestamp_ms=1_000)  # LogAppendTime replaces it
    producer.flush(10)
    producer.close(5)
    r = cli("consume", "--topic", "kp-in", "--from-beginning", "-e", "--property", "print.headers=true",
            "--property", "print.key=true", "--property", "print.timestamp=true")
    lines = [line.split("\t") for line in r.out.splitlines()]
    assert [line[1:] for line in lines] == [["trace:t1,empty:", "k", "null"], ["NO_HEADERS", "k2", "v2"]]
    assert all(line[0].startswith("LogAppendTime:") and int(line[0].split(":")[1]) > 1_000 for line in lines)

    _topic(cli, "kp-out")
    r = cli("produce", "--topic", "kp-out", "-H", "a=1", "--property", "parse.key=true", "-Z", stdin="gone\t\nk\tv\n")
    assert r.code == 0, r.err
    consumer = KafkaConsumer("kp-out", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10000)
    got = []
    for m in consumer:
        got.append((m.key, m.value, m.headers, m.timestamp_type))
        if len(got) == 2:
            break
    consumer.close()
    assert got == [(b"gone", None, [("a", b"1")], 0), (b"k", b"v", [("a", b"1")], 0)]


def test_produce_follows_a_moved_leader_and_stops_on_other_errors(cli: Runner, monkeypatch: Any) -> None:
    import kbroker.cli.produce as produce_cli
    from kbroker.client.errors import INVALID_REQUEST, NOT_LEADER_OR_FOLLOWER, KafkaError

    _topic(cli, "moved")
    real = produce_cli.produce
    calls: list[int] = []

    def refuse_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # as a partition whose leadership just moved answers
            raise KafkaError(NOT_LEADER_OR_FOLLOWER)
        return real(*args, **kwargs)

    monkeypatch.setattr(produce_cli, "produce", refuse_first)
    assert cli("produce", "--topic", "moved", stdin="once\n").code == 0
    assert len(calls) == 2
    assert cli("consume", "--topic", "moved", "--from-beginning", "-e").out == "once\n"  # sent exactly once

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise KafkaError(INVALID_REQUEST, "refused")

    calls.clear()
    monkeypatch.setattr(produce_cli, "produce", refuse)
    r = cli("produce", "--topic", "moved", stdin="x\n")
    assert (r.code, r.err, len(calls)) == (1, "kbroker: error: INVALID_REQUEST: refused\n", 1)
