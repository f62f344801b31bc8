"""``kbroker share-groups``: list, describe, reset offsets, delete."""

from __future__ import annotations

import pytest

from kbroker.cli import main
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import WireClient, batch, create_topic, produce_one


def run(capsys: pytest.CaptureFixture[str], bootstrap: str, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["share-groups", *argv, "--bootstrap-server", bootstrap])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def test_share_groups_cli(kafka_broker: BrokerThread, capsys: pytest.CaptureFixture[str]) -> None:
    bs = kafka_broker.bootstrap
    tid = create_topic(kafka_broker, "cli-t", 2)
    w = WireClient(bs)
    try:
        for _ in range(2):
            produce_one(w, "cli-t", 0, batch([b"a", b"b", b"c"]))
        hb = w.call(76, 1, {"group_id": "cli-g", "member_id": "m1", "member_epoch": 0, "rack_id": None,
                            "subscribed_topic_names": ["cli-t"]})
        assert hb.error_code == 0
        code, out, _ = run(capsys, bs, "--list")
        assert code == 0 and out.split() == ["cli-g"]
        code, out, _ = run(capsys, bs, "--describe", "--group", "cli-g", "--members")
        assert code == 0 and rows(out)[1][:2] == ["cli-g", "m1"] and "cli-t:0,1" in out
        # Reset while a member is in: the plan prints, the execution is refused.
        code, out, err = run(capsys, bs, "--reset-offsets", "--group", "cli-g", "--topic", "cli-t:0",
                             "--to-earliest", "--execute")
        assert code != 0 and "not empty" in err
        w.call(76, 1, {"group_id": "cli-g", "member_id": "m1", "member_epoch": -1, "rack_id": None,
                       "subscribed_topic_names": None})
        code, out, _ = run(capsys, bs, "--reset-offsets", "--group", "cli-g", "--topic", "cli-t", "--to-latest")
        assert code == 0 and rows(out)[1:] == [["cli-g", "cli-t", "0", "6"], ["cli-g", "cli-t", "1", "0"]]
        assert kafka_broker.broker.shares.start_offset("cli-g", tid, 0) == -1  # a dry run changes nothing
        code, out, _ = run(capsys, bs, "--reset-offsets", "--group", "cli-g", "--topic", "cli-t:0", "--to-offset",
                           "4", "--execute")
        assert code == 0
        code, out, _ = run(capsys, bs, "--describe", "--group", "cli-g")
        assert code == 0 and ["cli-g", "cli-t", "0", "4"] in rows(out)
        code, out, err = run(capsys, bs, "--describe", "--group", "nope")
        assert code != 0 and "does not exist" in err
        code, out, _ = run(capsys, bs, "--delete", "--group", "cli-g")
        assert code == 0
        code, out, _ = run(capsys, bs, "--list")
        assert out.split() == []
    finally:
        w.close()
