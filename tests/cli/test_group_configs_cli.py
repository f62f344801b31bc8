"""``kbroker group-configs`` against a real broker."""

from __future__ import annotations

from typing import Any

Runner = Any  # the `cli` fixture from conftest.py


def test_alter_describe_delete(cli: Runner) -> None:
    r = cli("group-configs", "--alter", "--group", "g",
            "--add-config", "consumer.session.timeout.ms=50000,share.auto.offset.reset=earliest")
    assert (r.code, r.out) == (0, "Completed updating config for group g.\n"), r.err
    r = cli("group-configs", "--describe", "--group", "g")
    assert r.code == 0
    assert r.out.splitlines() == [
        "Dynamic configs for group g are:",
        "  consumer.session.timeout.ms=50000 sensitive=false synonyms={GROUP_CONFIG:consumer.session.timeout.ms=50000}",
        "  share.auto.offset.reset=earliest sensitive=false synonyms={GROUP_CONFIG:share.auto.offset.reset=earliest}",
    ]
    assert "  share.isolation.level=read_uncommitted " in cli("group-configs", "--describe", "--group", "g",
                                                             "--all").out
    assert cli("group-configs", "--alter", "--group", "g", "--delete-config", "share.auto.offset.reset").code == 0
    assert "share.auto.offset.reset" not in cli("group-configs", "--describe", "--group", "g").out


def test_refusals(cli: Runner) -> None:
    r = cli("group-configs", "--alter", "--group", "g", "--add-config", "consumer.session.timeout.ms=1")
    assert r.code != 0
    assert "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms" in r.err
    r = cli("group-configs", "--alter", "--group", "g", "--add-config", "nonsense")
    assert r.code != 0 and "--add-config expects key=value" in r.err
    assert cli("group-configs", "--alter", "--group", "g").code != 0
