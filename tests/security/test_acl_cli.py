"""``kbroker acls`` end to end against a broker with ACLs on."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from kbroker.cli import main
from kbroker.cli.acls import parse_operation
from kbroker.client import KafkaClient, admin
from kbroker.security.acl import AclBinding
from kbroker.security.model import ANONYMOUS, AclOperation, AclPermissionType, PatternType, ResourceType
from kbroker.testing import BrokerThread

Op, P, R, T = AclOperation, PatternType, ResourceType, AclPermissionType


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    b = BrokerThread(tmp_path / "data", {"authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
                                         "super.users": ANONYMOUS}).start()
    yield b
    b.stop()


@pytest.fixture
def acls(broker: BrokerThread, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    def run(*argv: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(["acls", *argv, "--bootstrap-server", broker.bootstrap])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def stored(broker: BrokerThread) -> set[AclBinding]:
    with KafkaClient(broker.bootstrap) as c:
        return set(admin.describe_acls(c))


def test_add_list_remove(acls: Callable[..., Result], broker: BrokerThread) -> None:
    r = acls("--add", "--allow-principal", "User:alice", "--allow-principal", "User:bob", "--operation", "Read",
             "--operation", "describe_configs", "--topic", "orders", "--group", "billing",
             "--allow-host", "10.0.0.1")
    # A group does not support DescribeConfigs: those two are refused, the rest added.
    assert r.code == 1
    assert "ResourceType GROUP only supports operations" in r.err
    assert "Adding ACLs for resource `ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)`:" in r.out
    assert " \t(principal=User:alice, host=10.0.0.1, operation=READ, permissionType=ALLOW) " in r.out
    expected = {AclBinding(R.TOPIC, "orders", P.LITERAL, u, "10.0.0.1", op, T.ALLOW)
                for u in ("User:alice", "User:bob") for op in (Op.READ, Op.DESCRIBE_CONFIGS)}
    expected |= {AclBinding(R.GROUP, "billing", P.LITERAL, u, "10.0.0.1", Op.READ, T.ALLOW)
                 for u in ("User:alice", "User:bob")}
    assert stored(broker) == expected

    r = acls("--add", "--deny-principal", "User:mallory", "--topic", "ord", "--resource-pattern-type", "prefixed",
             "--cluster", "--transactional-id", "tx")
    assert r.code == 0, r.err
    # The cluster's pattern is literal whatever --resource-pattern-type says.
    deny = {AclBinding(rt, name, pt, "User:mallory", "*", Op.ALL, T.DENY)
            for rt, name, pt in ((R.TOPIC, "ord", P.PREFIXED), (R.CLUSTER, "kafka-cluster", P.LITERAL),
                                 (R.TRANSACTIONAL_ID, "tx", P.PREFIXED))}
    assert stored(broker) == expected | deny
    assert "Current ACLs for resource `ResourcePattern(resourceType=CLUSTER, name=kafka-cluster, " \
           "patternType=LITERAL)`:" in r.out

    r = acls("--list")
    assert r.code == 0 and r.out.count("Current ACLs for resource") == 5
    r = acls("--list", "--topic", "orders-eu", "--resource-pattern-type", "match")
    assert r.code == 0
    assert "name=ord, patternType=PREFIXED" in r.out and "name=orders," not in r.out
    r = acls("--list", "--principal", "User:bob")
    assert "User:alice" not in r.out and r.out.count("User:bob") == 3

    # One entry, confirmed at the prompt; then a whole resource, refused, then forced.
    r = acls("--remove", "--allow-principal", "User:alice", "--allow-host", "10.0.0.1", "--operation", "Read",
             "--topic", "orders", stdin="y\n")
    assert r.code == 0, r.err
    assert "Are you sure you want to remove ACLs" in r.out
    assert stored(broker) == (expected | deny) - {AclBinding(R.TOPIC, "orders", P.LITERAL, "User:alice",
                                                             "10.0.0.1", Op.READ, T.ALLOW)}
    before = stored(broker)
    r = acls("--remove", "--group", "billing", stdin="n\n")
    assert r.code == 0 and "delete all ACLs for resource filter" in r.out
    assert stored(broker) == before
    r = acls("--remove", "--group", "billing", "--force")
    assert r.code == 0
    assert "Removed ACLs for resource `ResourcePattern(resourceType=GROUP, name=billing" in r.out
    assert not any(b.resource_type == R.GROUP for b in stored(broker))
    r = acls("--remove", "--topic", "x", "--resource-pattern-type", "any", "--force")
    assert r.code == 0


@pytest.mark.parametrize(("argv", "message"), [
    (("--add", "--topic", "t"), "--add needs --allow-principal or --deny-principal"),
    (("--add", "--allow-principal", "User:a"), "--add needs a resource"),
    (("--add", "--allow-principal", "User:a", "--topic", "t", "--resource-pattern-type", "match"),
     "not valid when adding"),
    (("--add", "--allow-principal", "alice", "--topic", "t"), "is not TYPE:NAME"),
    (("--add", "--allow-principal", "User:a", "--topic", "t", "--operation", "Fly"), "unknown operation 'Fly'"),
    (("--remove", "--force"), "--remove needs a resource"),
    (("--remove", "--topic", "t", "--principal", "User:a"), "--principal is only valid with --list"),
    (("--list", "--force"), "--force is only valid with --remove"),
])
def test_usage_errors(argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", *argv, "--bootstrap-server", "127.0.0.1:1"]) == 1
    assert message in capsys.readouterr().err


def test_broker_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BrokerThread(tmp_path / "data") as b:
        assert main(["acls", "--list", "--bootstrap-server", b.bootstrap]) == 1
    assert "SECURITY_DISABLED" in capsys.readouterr().err


def test_operation_names() -> None:
    assert parse_operation("ClusterAction") == Op.CLUSTER_ACTION
    assert parse_operation("IDEMPOTENT_WRITE") == Op.IDEMPOTENT_WRITE
    assert parse_operation("all") == Op.ALL
    for bad in ("Any", "unknown", ""):
        with pytest.raises(ValueError):
            parse_operation(bad)
