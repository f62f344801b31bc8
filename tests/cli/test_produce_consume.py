"""``kbroker produce`` and ``kbroker consume`` round trips."""

from __future__ import annotations

from typing import Any

import pytest

Runner = Any  # the `cli` fixture from conftest.py


def test_keyed_lines_round_trip(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "kv", "--partitions", "1").code == 0
    r = cli("produce", "--topic", "kv", "--property", "parse.key=true", "--property", "key.separator=:",
            stdin="k1:v1\nk2:v2:with:colons\n:empty-key\n")
    assert r.code == 0, r.err
    r = cli("consume", "--topic", "kv", "--from-beginning", "--max-messages", "3",
            "--property", "print.key=true", "--property", "key.separator=|")
    assert r.code == 0, r.err
    assert r.out == "k1|v1\nk2|v2:with:colons\n|empty-key\n"
    assert r.err == "Processed a total of 3 messages\n"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_values_across_partitions(cli: Runner, codec: str) -> None:
    assert cli("topics", "--create", "--topic", "c", "--partitions", "3").code == 0
    lines = [f"line-{i}" for i in range(20)]
    r = cli("produce", "--topic", "c", "--compression", codec, "--acks", "1", stdin="\n".join(lines) + "\n")
    assert r.code == 0, r.err
    r = cli("consume", "--topic", "c", "--from-beginning", "--max-messages", "20")
    assert r.code == 0, r.err
    assert sorted(r.out.splitlines()) == sorted(lines)


def test_keys_choose_partitions_like_the_java_client(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "p", "--partitions", "4").code == 0
    stdin = "".join(f"key{i}\tv{i}\n" for i in range(12))
    assert cli("produce", "--topic", "p", "--property", "parse.key=true", stdin=stdin).code == 0
    r = cli("consume", "--topic", "p", "--from-beginning", "--max-messages", "12",
            "--property", "print.key=true", "--property", "print.partition=true")
    from kbroker.client.data import partition_for_key

    for line in r.out.splitlines():
        part, key, _ = line.split("\t")
        assert part == f"Partition:{partition_for_key(key.encode(), 4)}"


def test_partition_and_offset_selection(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "o", "--partitions", "2").code == 0
    assert cli("produce", "--topic", "o", "--partition", "1", stdin="a\nb\nc\nd\n").code == 0
    r = cli("consume", "--topic", "o", "--partition", "1", "--offset", "2", "--max-messages", "2",
            "--property", "print.offset=true")
    assert r.out == "Offset:2\tc\nOffset:3\td\n"
    r = cli("consume", "--topic", "o", "--partition", "1", "--offset", "earliest", "--timeout-ms", "200")
    assert r.out == "a\nb\nc\nd\n"
    r = cli("consume", "--topic", "o", "--partition", "0", "--offset", "earliest", "--timeout-ms", "200")
    assert (r.code, r.out) == (0, "")
    r = cli("consume", "--topic", "o", "--partition", "1", "--offset", "latest", "--timeout-ms", "200")
    assert (r.code, r.out, r.err) == (0, "", "Processed a total of 0 messages\n")


def test_without_from_beginning_starts_at_the_end(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "end", "--partitions", "1").code == 0
    assert cli("produce", "--topic", "end", stdin="old\n").code == 0
    r = cli("consume", "--topic", "end", "--timeout-ms", "200")
    assert (r.code, r.out) == (0, "")


def test_consume_errors(cli: Runner) -> None:
    r = cli("consume", "--topic", "nope", "--timeout-ms", "100")
    assert r.code == 1 and r.err.startswith("kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: ")
    assert cli("topics", "--create", "--topic", "e", "--partitions", "1").code == 0
    r = cli("consume", "--topic", "e", "--partition", "0", "--offset", "99", "--timeout-ms", "100")
    assert r.code == 1
    assert r.err.splitlines()[-1].startswith("kbroker: error: OFFSET_OUT_OF_RANGE: Fetch position 99 ")
    r = cli("consume", "--topic", "e", "--offset", "0")
    assert r.code != 0 and "--partition" in r.err


def test_produce_rejects_a_line_without_the_separator(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "s", "--partitions", "1").code == 0
    r = cli("produce", "--topic", "s", "--property", "parse.key=true", stdin="no-separator\n")
    assert r.code == 1
    assert r.err.startswith("kbroker: error: ") and "No key separator found on line number 1" in r.err
