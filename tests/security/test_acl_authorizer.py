"""The ACL engine: Kafka's StandardAuthorizer rules, binding validation, filters and persistence."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from kbroker.config import ConfigError
from kbroker.security.acl import SUPPORTED_OPERATIONS, AclBinding, AclBindingFilter, InvalidAcl
from kbroker.security.authorizer import StandardAuthorizer, build_authorizer
from kbroker.security.model import (
    ANONYMOUS,
    CLUSTER_NAME,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourceType,
)
from kbroker.security.store import FileStateStore
from kbroker.testing import BrokerThread, make_config

Op, P, R, T = AclOperation, PatternType, ResourceType, AclPermissionType
ALLOW, DENY = T.ALLOW, T.DENY
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.1"


class MemoryStore:
    """A StateStore in memory that keeps what a file would (a JSON round trip), counting saves."""

    def __init__(self) -> None:
        self.docs: dict[str, str] = {}
        self.saves = 0
        self.fail = False

    def load(self, kind: str) -> Any:
        return json.loads(self.docs[kind]) if kind in self.docs else None

    def save(self, kind: str, document: Any) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saves += 1
        self.docs[kind] = json.dumps(document)


def acl(name: str = "t", principal: str = ALICE, op: AclOperation = Op.READ, perm: AclPermissionType = ALLOW,
        rtype: ResourceType = R.TOPIC, pattern: PatternType = P.LITERAL, host: str = "*") -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def make(tmp_path: Path, store: Any = None, **overrides: str) -> StandardAuthorizer:
    cfg = make_config(tmp_path, {"authorizer.class.name": STANDARD, **{k.replace("_", "."): v
                                                                       for k, v in overrides.items()}})
    return StandardAuthorizer(cfg, store if store is not None else MemoryStore())


def with_acls(tmp_path: Path, *bindings: AclBinding, **overrides: str) -> StandardAuthorizer:
    auth = make(tmp_path, **overrides)
    assert anyio.run(auth.create_acls, list(bindings)) == [None] * len(bindings)
    return auth


def check(auth: StandardAuthorizer, op: AclOperation, name: str = "t", principal: str = ALICE,
          rtype: ResourceType = R.TOPIC, host: str = HOST) -> bool:
    return auth.authorize(principal, host, op, rtype, name)


# -- matching ---------------------------------------------------------------------------------


def test_no_acls_denies_unless_allow_everyone(tmp_path: Path) -> None:
    assert not check(make(tmp_path), Op.READ)
    assert check(make(tmp_path, allow_everyone_if_no_acl_found="true"), Op.READ)


def test_allow_everyone_only_applies_when_no_acl_names_the_resource(tmp_path: Path) -> None:
    # An ACL for another principal on the resource: the default no longer applies.
    auth = with_acls(tmp_path, acl(principal=BOB), allow_everyone_if_no_acl_found="true")
    assert not check(auth, Op.READ)
    assert check(auth, Op.READ, name="other")
    # A prefixed or wildcard ACL naming the resource counts too.
    auth = with_acls(tmp_path, acl("o", principal=BOB, pattern=P.PREFIXED), allow_everyone_if_no_acl_found="true")
    assert not check(auth, Op.READ, name="other")
    assert check(auth, Op.READ, name="x")


def test_literal_acl_matches_its_name_only(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl("orders"))
    assert check(auth, Op.READ, "orders")
    assert not check(auth, Op.READ, "orders2")
    assert not check(auth, Op.READ, "order")
    assert not check(auth, Op.WRITE, "orders")
    assert not check(auth, Op.READ, "orders", rtype=R.GROUP)


def test_literal_wildcard_name_matches_every_resource_of_its_type(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl("*", op=Op.WRITE))
    assert check(auth, Op.WRITE, "anything")
    assert check(auth, Op.WRITE, "*")
    assert not check(auth, Op.WRITE, "anything", rtype=R.GROUP)


def test_prefixed_acl_matches_names_starting_with_it(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl("pay", pattern=P.PREFIXED), acl("payments-eu", pattern=P.PREFIXED, op=Op.WRITE))
    assert check(auth, Op.READ, "pay")
    assert check(auth, Op.READ, "payments")
    assert check(auth, Op.WRITE, "payments-eu-1")
    assert not check(auth, Op.WRITE, "payments-us")
    assert not check(auth, Op.READ, "pa")
    assert not check(auth, Op.READ, "xpay")
    # A prefixed ACL named "*" is a prefix, not the wildcard.
    auth = with_acls(tmp_path, acl("*", pattern=P.PREFIXED))
    assert not check(auth, Op.READ, "orders")
    assert check(auth, Op.READ, "*orders")


def test_deny_wins_over_allow_from_any_pattern(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl("orders"), acl("ord", perm=DENY, pattern=P.PREFIXED))
    assert not check(auth, Op.READ, "orders")
    auth = with_acls(tmp_path, acl("orders", op=Op.ALL), acl("*", op=Op.READ, perm=DENY))
    assert not check(auth, Op.READ, "orders")
    assert check(auth, Op.WRITE, "orders")
    auth = with_acls(tmp_path, acl("*", op=Op.ALL), acl("orders", principal="User:*", perm=DENY, op=Op.WRITE))
    assert check(auth, Op.READ, "orders")
    assert not check(auth, Op.WRITE, "orders")


def test_implied_operations(tmp_path: Path) -> None:
    for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER):
        auth = with_acls(tmp_path, acl(op=op))
        assert check(auth, Op.DESCRIBE), op
        assert not check(auth, Op.DESCRIBE_CONFIGS), op
    auth = with_acls(tmp_path, acl(op=Op.ALTER_CONFIGS))
    assert check(auth, Op.DESCRIBE_CONFIGS)
    assert not check(auth, Op.DESCRIBE)
    assert not check(auth, Op.ALTER)
    auth = with_acls(tmp_path, acl(op=Op.CREATE))
    assert not check(auth, Op.DESCRIBE)


def test_deny_does_not_imply(tmp_path: Path) -> None:
    # DENY READ does not deny DESCRIBE (Kafka applies implications to ALLOW ACLs only).
    auth = with_acls(tmp_path, acl(op=Op.ALL), acl(op=Op.READ, perm=DENY))
    assert check(auth, Op.DESCRIBE)
    assert not check(auth, Op.READ)
    auth = with_acls(tmp_path, acl(op=Op.ALL), acl(op=Op.ALTER_CONFIGS, perm=DENY))
    assert check(auth, Op.DESCRIBE_CONFIGS)


def test_all_allows_and_denies_everything(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl(op=Op.ALL))
    assert all(check(auth, op) for op in SUPPORTED_OPERATIONS[R.TOPIC])
    auth = with_acls(tmp_path, acl(op=Op.ALL), acl(op=Op.ALL, perm=DENY))
    assert not any(check(auth, op) for op in SUPPORTED_OPERATIONS[R.TOPIC])


def test_principal_wildcard_and_exact_principal(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl(principal="User:*"))
    assert check(auth, Op.READ, principal=ALICE)
    assert check(auth, Op.READ, principal=ANONYMOUS)
    # Kafka matches User:* whatever the principal type.
    assert check(auth, Op.READ, principal="Group:ops")
    auth = with_acls(tmp_path, acl(principal=ALICE))
    assert not check(auth, Op.READ, principal=BOB)
    assert not check(auth, Op.READ, principal="User:ALICE")


def test_host_match(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl(host=HOST))
    assert check(auth, Op.READ, host=HOST)
    assert not check(auth, Op.READ, host="10.0.0.2")
    auth = with_acls(tmp_path, acl(), acl(host="10.0.0.2", perm=DENY))
    assert check(auth, Op.READ, host=HOST)
    assert not check(auth, Op.READ, host="10.0.0.2")


def test_host_match_is_by_address_not_spelling(tmp_path: Path) -> None:
    # A client of a dual-stack listener (every interface) connects from ::ffff:10.0.0.2; Kafka
    # (Java) sees 10.0.0.2 and spells IPv6 uncompressed (0:0:0:0:0:0:0:1): one address, one host.
    auth = with_acls(tmp_path, acl(), acl(host="10.0.0.2", perm=DENY), acl(host="0:0:0:0:0:0:0:1", perm=DENY))
    assert check(auth, Op.READ, host=HOST)
    assert check(auth, Op.READ, host="::ffff:10.0.0.1")
    assert not check(auth, Op.READ, host="::ffff:10.0.0.2")
    assert not check(auth, Op.READ, host="::1")
    assert auth.authorized_operations(ALICE, "::ffff:10.0.0.2", R.TOPIC, "t") == 1 << Op.DESCRIBE  # READ denied
    auth = with_acls(tmp_path, acl(op=Op.WRITE, host="::1"))
    assert check(auth, Op.WRITE, host="0:0:0:0:0:0:0:1")
    assert auth.authorize_by_resource_type(ALICE, "0:0:0:0:0:0:0:1", Op.WRITE, R.TOPIC)
    assert not auth.authorize_by_resource_type(ALICE, "::2", Op.WRITE, R.TOPIC)
    # Host names are compared as given.
    auth = with_acls(tmp_path, acl(host="gateway"))
    assert check(auth, Op.READ, host="gateway")
    assert not check(auth, Op.READ, host="Gateway")


def test_super_users(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl("*", principal="User:*", op=Op.ALL, perm=DENY), super_users="User:admin; User:ops")
    assert auth.super_users == {"User:admin", "User:ops"}
    assert check(auth, Op.DELETE, principal="User:admin")
    assert check(auth, Op.ALTER, principal="User:ops", rtype=R.CLUSTER, name=CLUSTER_NAME)
    assert not check(auth, Op.READ, principal=ALICE)
    assert auth.authorized_operations("User:admin", HOST, R.GROUP, "g") == sum(
        1 << op for op in SUPPORTED_OPERATIONS[R.GROUP])


def test_super_users_without_a_principal_type_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="super.users: expected a string in format principalType:principalName "
                                          "but got admin"):
        make(tmp_path, super_users="User:ops;admin")
    b = BrokerThread(tmp_path / "data", {"authorizer.class.name": STANDARD, "super.users": "admin"})
    with pytest.raises(RuntimeError) as exc:
        b.start()
    assert "super.users" in str(exc.value.__cause__)


def test_authorized_operations_bits(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, acl(op=Op.READ), acl(op=Op.ALTER_CONFIGS), acl(op=Op.WRITE, perm=DENY))
    bits = auth.authorized_operations(ALICE, HOST, R.TOPIC, "t")
    assert bits == (1 << Op.READ) | (1 << Op.DESCRIBE) | (1 << Op.ALTER_CONFIGS) | (1 << Op.DESCRIBE_CONFIGS)
    assert auth.authorized_operations(BOB, HOST, R.TOPIC, "t") == 0
    auth = with_acls(tmp_path, acl(CLUSTER_NAME, rtype=R.CLUSTER, op=Op.ALL))
    assert auth.authorized_operations(ALICE, HOST, R.CLUSTER, CLUSTER_NAME) == sum(
        1 << op for op in SUPPORTED_OPERATIONS[R.CLUSTER])
    # No ACL at all on the resource: the default decides every operation alike.
    open_auth = make(tmp_path, allow_everyone_if_no_acl_found="true")
    assert open_auth.authorized_operations(ALICE, HOST, R.TRANSACTIONAL_ID, "tx") == (1 << Op.WRITE) | (
        1 << Op.DESCRIBE)


def test_check_stays_cheap_with_many_acls(tmp_path: Path) -> None:
    bindings = [acl(f"topic-{i}", principal=f"User:u{i % 50}") for i in range(5000)]
    bindings += [acl(f"pre-{i}-", pattern=P.PREFIXED, op=Op.WRITE) for i in range(2000)]
    auth = with_acls(tmp_path, *bindings)
    assert check(auth, Op.READ, "topic-4999", principal="User:u49")
    assert check(auth, Op.WRITE, "pre-1999-x")
    assert not check(auth, Op.WRITE, "pre-2000-x")
    start = time.perf_counter()
    for i in range(5000):
        check(auth, Op.READ, f"topic-{i}", principal="User:u1")
    per_check = (time.perf_counter() - start) / 5000
    # A scan of 7000 ACLs would take milliseconds per check; the index answers in microseconds.
    assert per_check < 0.0005, per_check


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("binding", "message"), [
    (acl(pattern=P.MATCH), "Invalid patternType MATCH"),
    (acl(pattern=P.ANY), "Invalid patternType ANY"),
    (acl(pattern=P.UNKNOWN), "Invalid patternType UNKNOWN"),
    (acl(rtype=R.ANY), "Invalid resourceType ANY"),
    (acl(rtype=R.UNKNOWN), "Invalid resourceType UNKNOWN"),
    (acl(op=Op.ANY), "Invalid operation ANY"),
    (acl(op=Op.UNKNOWN), "Invalid operation UNKNOWN"),
    (acl(perm=T.ANY), "Invalid permissionType ANY"),
    (acl(perm=T.UNKNOWN), "Invalid permissionType UNKNOWN"),
    (acl(""), "Resource name should not be empty"),
    (acl("other", rtype=R.CLUSTER, op=Op.ALTER), "The only valid name for the CLUSTER resource is kafka-cluster"),
    (acl(principal="alice"), "no colon is present"),
    (acl(principal="User:"), "TYPE:name"),
])
def test_invalid_bindings(binding: AclBinding, message: str) -> None:
    with pytest.raises(InvalidAcl, match=message):
        binding.validate()


@pytest.mark.parametrize("binding,message", [
    (acl(rtype=R.GROUP, op=Op.WRITE), "ResourceType GROUP only supports operations"),
    (acl(rtype=R.TOPIC, op=Op.CLUSTER_ACTION), "ResourceType TOPIC only supports operations"),
])
def test_operations_a_resource_type_lacks_are_stored_as_kafka_does(binding: AclBinding, message: str) -> None:
    # Kafka's controller stores them (they never match); kafka-acls.sh refuses them before sending.
    binding.validate()
    assert message in (binding.operation_error() or "")


def test_unknown_wire_codes_become_unknown() -> None:
    b = AclBinding.of(99, "t", 3, ALICE, "*", 3, 3)
    assert b.resource_type == R.UNKNOWN
    with pytest.raises(InvalidAcl, match="Invalid resourceType UNKNOWN"):
        b.validate()
    f = AclBindingFilter.of(1, None, 1, None, None, 77, 1)
    assert f.operation == Op.UNKNOWN
    with pytest.raises(InvalidAcl, match="Unknown entryFilter"):
        f.validate()
    with pytest.raises(InvalidAcl, match="Unknown patternFilter"):
        AclBindingFilter.of(1, None, 0, None, None, 1, 1).validate()


def test_valid_bindings_of_every_type() -> None:
    for rtype, ops in SUPPORTED_OPERATIONS.items():
        name = CLUSTER_NAME if rtype == R.CLUSTER else "x"
        for op in (*ops, Op.ALL):
            for pattern in (P.LITERAL, P.PREFIXED):
                acl(name, rtype=rtype, op=op, pattern=pattern, perm=DENY).validate()


# -- filters ----------------------------------------------------------------------------------

LIT = acl("orders")
WILD = acl("*")
PRE = acl("ord", pattern=P.PREFIXED)
OTHER_PRE = acl("pay", pattern=P.PREFIXED)
GROUP = acl("orders", rtype=R.GROUP, principal=BOB, op=Op.DESCRIBE, perm=DENY, host=HOST)
ALL = [LIT, WILD, PRE, OTHER_PRE, GROUP]


@pytest.mark.parametrize(("flt", "expected"), [
    (AclBindingFilter(), ALL),
    (AclBindingFilter(R.TOPIC), [LIT, WILD, PRE, OTHER_PRE]),
    (AclBindingFilter(R.ANY, "orders"), [LIT, GROUP]),  # ANY: exact name, any pattern type
    (AclBindingFilter(R.ANY, "orders", P.LITERAL), [LIT, GROUP]),
    (AclBindingFilter(R.TOPIC, "ord", P.PREFIXED), [PRE]),
    (AclBindingFilter(R.TOPIC, "orders", P.PREFIXED), []),
    (AclBindingFilter(R.TOPIC, None, P.PREFIXED), [PRE, OTHER_PRE]),
    (AclBindingFilter(R.TOPIC, "orders", P.MATCH), [LIT, WILD, PRE]),  # what applies to topic "orders"
    (AclBindingFilter(R.TOPIC, "payroll", P.MATCH), [WILD, OTHER_PRE]),
    (AclBindingFilter(R.TOPIC, "*", P.MATCH), [WILD]),
    (AclBindingFilter(R.TOPIC, None, P.MATCH), [LIT, WILD, PRE, OTHER_PRE]),
    (AclBindingFilter(principal=BOB), [GROUP]),
    (AclBindingFilter(host=HOST), [GROUP]),
    (AclBindingFilter(host="*"), [LIT, WILD, PRE, OTHER_PRE]),
    (AclBindingFilter(operation=Op.DESCRIBE), [GROUP]),
    (AclBindingFilter(operation=Op.ALL), []),
    (AclBindingFilter(permission=DENY), [GROUP]),
    (AclBindingFilter(R.GROUP, "orders", P.MATCH, BOB, HOST, Op.DESCRIBE, DENY), [GROUP]),
])
def test_filter_matching(tmp_path: Path, flt: AclBindingFilter, expected: list[AclBinding]) -> None:
    flt.validate()
    assert [b for b in ALL if flt.matches(b)] == expected
    assert with_acls(tmp_path, *ALL).acls(flt) == expected


# -- changes and persistence ------------------------------------------------------------------


def test_create_is_idempotent_and_reports_invalid_ones(tmp_path: Path) -> None:
    store = MemoryStore()
    auth = make(tmp_path, store)
    results = anyio.run(auth.create_acls, [LIT, acl(pattern=P.MATCH), LIT, PRE])
    assert results[0] is None and results[2] is None and results[3] is None
    assert results[1] == "Invalid patternType MATCH"
    assert auth.acls(AclBindingFilter()) == [LIT, PRE]
    assert store.saves == 1
    assert anyio.run(auth.create_acls, [LIT]) == [None]
    assert store.saves == 1  # nothing new: nothing written


def test_delete_reports_each_binding_under_the_first_filter(tmp_path: Path) -> None:
    auth = with_acls(tmp_path, *ALL)
    results = anyio.run(auth.delete_acls, [AclBindingFilter(R.TOPIC, "orders", P.MATCH),
                                           AclBindingFilter(R.TOPIC),
                                           AclBindingFilter(R.UNKNOWN),
                                           AclBindingFilter(principal="User:nobody")])
    assert results == [[LIT, WILD, PRE], [OTHER_PRE], "Unknown patternFilter.", []]
    assert auth.acls(AclBindingFilter()) == [GROUP]
    assert not check(auth, Op.READ, "orders")


def test_failed_save_changes_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    auth = make(tmp_path, store)
    anyio.run(auth.create_acls, [LIT])
    store.fail = True
    with pytest.raises(OSError):
        anyio.run(auth.create_acls, [PRE])
    with pytest.raises(OSError):
        anyio.run(auth.delete_acls, [AclBindingFilter()])
    assert auth.acls(AclBindingFilter()) == [LIT]
    assert check(auth, Op.READ, "orders") and not check(auth, Op.READ, "ordinal")


def test_acls_survive_a_restart_in_the_file_store(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "data")
    auth = make(tmp_path, store)
    anyio.run(auth.create_acls, ALL)
    anyio.run(auth.delete_acls, [AclBindingFilter(principal=BOB)])
    assert (store.path("acls").stat().st_mode & 0o777) == 0o600
    again = make(tmp_path, FileStateStore(tmp_path / "data"))
    assert again.acls(AclBindingFilter()) == [LIT, WILD, PRE, OTHER_PRE]
    assert check(again, Op.READ, "ordinal")


def test_corrupt_store_refuses_to_start(tmp_path: Path) -> None:
    store = MemoryStore()
    store.docs["acls"] = json.dumps([{"resource_type": "NOPE"}])
    with pytest.raises(OSError, match="stored ACLs"):
        make(tmp_path, store)


def test_concurrent_changes_all_land(tmp_path: Path) -> None:
    store = MemoryStore()
    auth = make(tmp_path, store)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(auth.create_acls, [acl(f"t{i}")])

    anyio.run(main)
    assert len(auth.acls(AclBindingFilter())) == 20
    assert len(json.loads(store.docs["acls"])) == 20


# -- build_authorizer -------------------------------------------------------------------------


def test_build_authorizer_names(tmp_path: Path) -> None:
    store = MemoryStore()
    assert build_authorizer(make_config(tmp_path), store) is None
    for name in (STANDARD, "kafka.security.authorizer.AclAuthorizer"):
        auth = build_authorizer(make_config(tmp_path, {"authorizer.class.name": name}), store)
        assert isinstance(auth, StandardAuthorizer)
    with pytest.raises(ConfigError, match="unsupported authorizer 'com.example.MyAuthorizer'"):
        build_authorizer(make_config(tmp_path, {"authorizer.class.name": "com.example.MyAuthorizer"}), store)


def test_supported_operations_agree_with_the_no_authorizer_bit_fields() -> None:
    # Without an authorizer, handlers report ALL_OPERATIONS; with one, the allowed subset of these.
    from kbroker.handlers.api import ALL_OPERATIONS

    assert {t: sum(1 << op for op in ops) for t, ops in SUPPORTED_OPERATIONS.items()} == ALL_OPERATIONS


def test_authorize_by_resource_type_as_kafka() -> None:
    """KIP-679: an idempotent producer needs WRITE on some topic; a DENY covering every allowed name wins."""

    def by_type(tmp: Path, *bindings: AclBinding, **overrides: str) -> bool:
        return with_acls(tmp, *bindings, **overrides).authorize_by_resource_type(ALICE, HOST, Op.WRITE, R.TOPIC)

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        assert not by_type(tmp)
        assert by_type(tmp, acl("orders", op=Op.WRITE))
        assert by_type(tmp, acl("ord", op=Op.ALL, pattern=P.PREFIXED))
        assert by_type(tmp, acl("*", principal="User:*", op=Op.WRITE))
        assert not by_type(tmp, acl("orders", op=Op.READ))
        assert not by_type(tmp, acl("orders", op=Op.WRITE, host="10.9.9.9"))
        # A literal or prefixed DENY covering the allowed name takes it back ...
        assert not by_type(tmp, acl("orders", op=Op.WRITE), acl("orders", op=Op.WRITE, perm=DENY))
        assert not by_type(tmp, acl("orders", op=Op.WRITE), acl("or", op=Op.WRITE, perm=DENY, pattern=P.PREFIXED))
        assert not by_type(tmp, acl("orders", op=Op.WRITE), acl("*", op=Op.WRITE, perm=DENY))
        # A wildcard DENY wins over a wildcard ALLOW, whichever was created first.
        assert not by_type(tmp, acl("*", op=Op.WRITE), acl("*", principal="User:*", op=Op.ALL, perm=DENY))
        assert not by_type(tmp, acl("*", principal="User:*", op=Op.ALL, perm=DENY), acl("*", op=Op.WRITE))
        # ... one that covers another name does not.
        assert by_type(tmp, acl("orders", op=Op.WRITE), acl("other", op=Op.WRITE, perm=DENY))
        assert by_type(tmp, acl("ord", op=Op.WRITE, pattern=P.PREFIXED), acl("orders", op=Op.WRITE, perm=DENY))
        # Super users pass whatever the DENY ACLs say.
        assert by_type(tmp, acl("*", op=Op.WRITE, perm=DENY), super_users=ALICE)
