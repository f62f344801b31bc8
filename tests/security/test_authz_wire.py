"""Kafka's authorization rules, API by API, over the wire (kbroker's own codec on a socket).

Each test installs a rule-set authorizer in a live broker and checks the error codes and
the hiding rules of Kafka's KafkaApis/ControllerApis for the principal User:ANONYMOUS.
"""

from __future__ import annotations

import uuid
from typing import Any

from authz_support import Op, Res, RuleAuthorizer, cluster, install, rule

from kbroker.codec.error_codes import ErrorCode as E
from kbroker.common import TopicPartition
from kbroker.testing import BrokerThread
from tests.broker.replica_wire import (
    WireClient,
    batch,
    create_topic,
    fetch,
    fetch_body,
    partitions_of,
    produce,
    produce_one,
)

ZERO = uuid.UUID(int=0)
METADATA, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, LIST_OFFSETS = 3, 19, 20, 21, 2
FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS = 10, 11, 12, 13, 14, 15, 16, 42
OFFSET_COMMIT, OFFSET_FETCH, OFFSET_DELETE = 8, 9, 47
INIT_PID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN, WRITE_MARKERS, TXN_OFFSET_COMMIT = 22, 24, 25, 26, 27, 28
DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER, CREATE_PARTITIONS, DESCRIBE_LOG_DIRS = 32, 33, 44, 37, 35
DESCRIBE_PRODUCERS, DESCRIBE_TXNS, LIST_TXNS, DESCRIBE_TOPIC_PARTITIONS = 61, 65, 66, 75


def _metadata(wire: WireClient, names: list[str] | None, version: int = 12, auto: bool = False) -> Any:
    topics = None if names is None else [{"name": n, "topic_id": ZERO} for n in names]
    return wire.call(METADATA, version, {"topics": topics, "allow_auto_topic_creation": auto})


# --- produce, fetch, list offsets -------------------------------------------------------------


def test_produce_needs_write_on_each_topic(kafka_broker: BrokerThread, wire: WireClient,
                                           authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "open", 3)
    create_topic(kafka_broker, "closed", 3)
    authorizer.deny(rule(Op.WRITE, Res.TOPIC, "closed"), rule(Op.WRITE, Res.TOPIC, "absent"))
    body = {"transactional_id": None, "acks": 1, "timeout_ms": 5000, "topic_data": [
        {"name": t, "partition_data": [{"index": i, "records": batch([b"v"])} for i in range(3)]}
        for t in ("open", "closed", "absent")]}
    resp = wire.call(0, 9, body)
    codes = {t.name: [p.error_code for p in t.partition_responses] for t in resp.responses}
    # A refused topic answers TOPIC_AUTHORIZATION_FAILED whether it exists or not.
    assert codes == {"open": [0, 0, 0], "closed": [E.TOPIC_AUTHORIZATION_FAILED] * 3,
                     "absent": [E.TOPIC_AUTHORIZATION_FAILED] * 3}
    # One question per topic, however many partitions name it.
    assert sorted(authorizer.asked(Op.WRITE, Res.TOPIC)) == ["absent", "closed", "open"]
    assert kafka_broker.broker.replica_manager.fetch_offset_for_timestamp(TopicPartition("closed", 0), -1).offset == 0


def test_produce_unknown_topic_allowed_is_unknown(wire: WireClient, authorizer: RuleAuthorizer) -> None:
    assert produce_one(wire, "nowhere", 0, batch([b"v"])).error_code == E.UNKNOWN_TOPIC_OR_PARTITION


def test_produce_acks0_refused_closes_connection(kafka_broker: BrokerThread, wire: WireClient,
                                                 authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "t")
    authorizer.deny(rule(Op.WRITE, Res.TOPIC, "t"))
    produce(wire, "t", {0: batch([b"v"])}, acks=0)
    try:
        wire.call(METADATA, 12, {"topics": None})
    except (ConnectionError, OSError):
        pass
    else:
        raise AssertionError("an acks=0 produce that failed must close the connection")


def test_consumer_fetch_needs_read(kafka_broker: BrokerThread, wire: WireClient, authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "ok")
    secret_id = create_topic(kafka_broker, "secret")
    for t in ("ok", "secret"):
        assert produce_one(wire, t, 0, batch([b"a", b"b"])).error_code == 0
    authorizer.deny(rule(Op.READ, Res.TOPIC, "secret"))
    got = partitions_of(fetch(wire, {"ok": {0: 0}, "secret": {0: 0}}))
    assert got[("ok", 0)].error_code == 0 and got[("ok", 0)].records
    denied = got[("secret", 0)]
    assert denied.error_code == E.TOPIC_AUTHORIZATION_FAILED and not denied.records
    assert denied.high_watermark == -1
    # By topic id (v13+) too; an unknown id stays UNKNOWN_TOPIC_ID.
    unknown = uuid.uuid4()
    got = partitions_of(fetch(wire, {secret_id: {0: 0}, unknown: {0: 0}}, version=13))
    assert got[(secret_id, 0)].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert got[(unknown, 0)].error_code == E.UNKNOWN_TOPIC_ID


def test_fetch_session_keeps_refusing(kafka_broker: BrokerThread, wire: WireClient,
                                      authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "s")
    produce_one(wire, "s", 0, batch([b"a"]))
    first = fetch(wire, {"s": {0: 0}}, session_id=0, session_epoch=0)
    assert first.session_id != 0 and partitions_of(first)[("s", 0)].records
    authorizer.deny(rule(Op.READ, Res.TOPIC, "s"))
    # An incremental fetch naming nothing still covers the session's partition: refused now.
    nxt = fetch(wire, {}, session_id=first.session_id, session_epoch=1)
    assert partitions_of(nxt)[("s", 0)].error_code == E.TOPIC_AUTHORIZATION_FAILED


def test_follower_fetch_needs_cluster_action(kafka_broker: BrokerThread, wire: WireClient,
                                             authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "f")
    produce_one(wire, "f", 0, batch([b"a"]))
    body = fetch_body({"f": {0: 0}, "missing": {0: 0}})
    body["replica_id"] = 7
    authorizer.deny(cluster(Op.CLUSTER_ACTION))
    got = partitions_of(wire.call(1, 11, body))
    # Every partition, known or not, is refused.
    assert {k: p.error_code for k, p in got.items()} == {("f", 0): E.TOPIC_AUTHORIZATION_FAILED,
                                                          ("missing", 0): E.TOPIC_AUTHORIZATION_FAILED}
    # READ on the topic does not matter to a follower; CLUSTER_ACTION does.
    authorizer.deny(rule(Op.READ, Res.TOPIC, "f"))
    got = partitions_of(wire.call(1, 11, body))
    assert got[("f", 0)].error_code == 0 and got[("f", 0)].records


def test_list_offsets_needs_describe(kafka_broker: BrokerThread, wire: WireClient,
                                     authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "lo")
    create_topic(kafka_broker, "hidden")
    authorizer.deny(rule(Op.DESCRIBE, Res.TOPIC, "hidden"))
    for version in (0, 1, 7):
        body = {"replica_id": -1, "topics": [
            {"name": n, "partitions": [{"partition_index": 0, "timestamp": -1, "max_num_offsets": 1}]}
            for n in ("lo", "hidden", "nope")]}
        resp = wire.call(LIST_OFFSETS, version, body)
        codes = {t.name: t.partitions[0].error_code for t in resp.topics}
        assert codes == {"lo": 0, "hidden": E.TOPIC_AUTHORIZATION_FAILED, "nope": E.UNKNOWN_TOPIC_OR_PARTITION}


# --- metadata ---------------------------------------------------------------------------------


def test_metadata_hides_and_refuses(kafka_broker: BrokerThread, wire: WireClient, authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "seen")
    hidden_id = create_topic(kafka_broker, "hidden")
    authorizer.deny(rule(Op.DESCRIBE, Res.TOPIC, "hidden"), rule(Op.DESCRIBE, Res.TOPIC, "ghost"))
    for version in (0, 1, 12):
        listing = wire.call(METADATA, version, {"topics": [] if version == 0 else None})
        assert [t.name for t in listing.topics] == ["seen"]
    named = {t.name: t for t in _metadata(wire, ["seen", "hidden", "ghost"]).topics}
    assert named["seen"].error_code == 0
    # Existing or not, a topic the principal may not describe looks the same.
    for n in ("hidden", "ghost"):
        assert named[n].error_code == E.TOPIC_AUTHORIZATION_FAILED
        assert named[n].topic_id == ZERO and named[n].partitions == []
    # Named by id: the id is no secret, the name is withheld.
    by_id = wire.call(METADATA, 12, {"topics": [{"name": None, "topic_id": hidden_id}]}).topics[0]
    assert (by_id.error_code, by_id.name, by_id.topic_id) == (E.TOPIC_AUTHORIZATION_FAILED, None, hidden_id)


def test_metadata_auto_create_needs_create(kafka_broker: BrokerThread, wire: WireClient,
                                           authorizer: RuleAuthorizer) -> None:
    md = kafka_broker.broker.metadata
    authorizer.deny(cluster(Op.CREATE), rule(Op.CREATE, Res.TOPIC, "nocreate"))
    topics = {t.name: t for t in _metadata(wire, ["nocreate", "mine"], auto=True).topics}
    assert topics["nocreate"].error_code == E.TOPIC_AUTHORIZATION_FAILED and md.topic("nocreate") is None
    # CREATE on the topic alone is enough.
    assert topics["mine"].error_code in (0, E.LEADER_NOT_AVAILABLE) and md.topic("mine") is not None
    # Without auto-creation nothing needs CREATE: the unknown topic is just unknown.
    plain = _metadata(wire, ["nocreate"], auto=False).topics[0]
    assert plain.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
    # CREATE on the cluster covers every topic.
    authorizer.deny(rule(Op.CREATE, Res.TOPIC, "nocreate"))
    assert _metadata(wire, ["nocreate"], auto=True).topics[0].error_code in (0, E.LEADER_NOT_AVAILABLE)
    assert md.topic("nocreate") is not None


def test_describe_topic_partitions_hides(kafka_broker: BrokerThread, wire: WireClient,
                                         authorizer: RuleAuthorizer) -> None:
    for n in ("a", "b", "c"):
        create_topic(kafka_broker, n)
    authorizer.deny(rule(Op.DESCRIBE, Res.TOPIC, "b"))
    listing = wire.call(DESCRIBE_TOPIC_PARTITIONS, 0, {"topics": [], "response_partition_limit": 100})
    assert [t.name for t in listing.topics] == ["a", "c"]
    named = wire.call(DESCRIBE_TOPIC_PARTITIONS, 0, {"topics": [{"name": n} for n in ("b", "a")],
                                                     "response_partition_limit": 100})
    assert [(t.name, t.error_code) for t in named.topics] == [("a", 0), ("b", E.TOPIC_AUTHORIZATION_FAILED)]
    assert named.topics[1].topic_id == ZERO and named.topics[1].partitions == []


# --- topic administration ---------------------------------------------------------------------


def _create(wire: WireClient, *names: str, version: int = 7) -> dict[str, Any]:
    body = {"topics": [{"name": n, "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}
                       for n in names], "timeout_ms": 5000}
    return {t.name: t for t in wire.call(CREATE_TOPICS, version, body).topics}


def test_create_topics_cluster_or_topic_create(kafka_broker: BrokerThread, wire: WireClient,
                                               authorizer: RuleAuthorizer) -> None:
    md = kafka_broker.broker.metadata
    authorizer.deny(cluster(Op.CREATE), rule(Op.CREATE, Res.TOPIC, "no"), rule(Op.DESCRIBE_CONFIGS, Res.TOPIC, "blind"))
    got = _create(wire, "no", "yes", "blind")
    assert (got["no"].error_code, got["no"].error_message) == (E.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
    assert md.topic("no") is None
    assert got["yes"].error_code == 0 and got["yes"].num_partitions == 1 and got["yes"].configs
    assert got["yes"].topic_config_error_code == 0
    # Created, but its configs and shape are withheld without DESCRIBE_CONFIGS.
    blind = got["blind"]
    assert blind.error_code == 0 and md.topic("blind") is not None
    assert blind.topic_config_error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert (blind.num_partitions, blind.replication_factor, blind.configs) == (-1, -1, [])
    assert blind.topic_id == md.topic("blind").topic_id
    # CREATE on the cluster allows any topic.
    authorizer.deny(rule(Op.CREATE, Res.TOPIC, "no"))
    assert _create(wire, "no")["no"].error_code == 0


def test_delete_topics_unknown_versus_unauthorized(kafka_broker: BrokerThread, wire: WireClient,
                                                   authorizer: RuleAuthorizer) -> None:
    md = kafka_broker.broker.metadata
    create_topic(kafka_broker, "keep")
    secret = create_topic(kafka_broker, "secret")
    seen = create_topic(kafka_broker, "seen")
    create_topic(kafka_broker, "go")
    authorizer.deny(cluster(Op.DELETE), rule(Op.DELETE, Res.TOPIC, "keep"), rule(Op.DELETE, Res.TOPIC, "secret"),
                    rule(Op.DESCRIBE, Res.TOPIC, "secret"), rule(Op.DESCRIBE, Res.TOPIC, "ghost"),
                    rule(Op.DELETE, Res.TOPIC, "seen"))
    resp = wire.call(DELETE_TOPICS, 5, {"topic_names": ["keep", "ghost", "unknown", "go"], "timeout_ms": 5000})
    codes = {r.name: r.error_code for r in resp.responses}
    assert codes == {"keep": E.TOPIC_AUTHORIZATION_FAILED, "ghost": E.TOPIC_AUTHORIZATION_FAILED,
                     "unknown": E.UNKNOWN_TOPIC_OR_PARTITION, "go": 0}
    assert md.topic("keep") is not None and md.topic("go") is None
    # By id: the name is told only to a principal that may describe the topic.
    resp = wire.call(DELETE_TOPICS, 6, {"topics": [{"name": None, "topic_id": secret},
                                                   {"name": None, "topic_id": seen}], "timeout_ms": 5000})
    by_id = {r.topic_id: r for r in resp.responses}
    assert (by_id[secret].error_code, by_id[secret].name) == (E.TOPIC_AUTHORIZATION_FAILED, None)
    assert (by_id[seen].error_code, by_id[seen].name) == (E.TOPIC_AUTHORIZATION_FAILED, "seen")
    assert md.topic("secret") is not None and md.topic("seen") is not None
    # DELETE on the cluster covers every topic.
    authorizer.deny()
    assert wire.call(DELETE_TOPICS, 5, {"topic_names": ["keep"], "timeout_ms": 5000}).responses[0].error_code == 0


def test_create_partitions_needs_alter(kafka_broker: BrokerThread, wire: WireClient,
                                       authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "grow")
    create_topic(kafka_broker, "fixed")
    authorizer.deny(rule(Op.ALTER, Res.TOPIC, "fixed"))
    body = {"topics": [{"name": n, "count": 2, "assignments": None} for n in ("grow", "fixed")],
            "timeout_ms": 5000, "validate_only": False}
    codes = {r.name: r.error_code for r in wire.call(CREATE_PARTITIONS, 3, body).results}
    assert codes == {"grow": 0, "fixed": E.TOPIC_AUTHORIZATION_FAILED}
    assert len(kafka_broker.broker.metadata.topic("fixed").partitions) == 1


def test_delete_records_needs_delete(kafka_broker: BrokerThread, wire: WireClient,
                                     authorizer: RuleAuthorizer) -> None:
    for t in ("dr", "kept"):
        create_topic(kafka_broker, t)
        produce_one(wire, t, 0, batch([b"a", b"b"]))
    authorizer.deny(rule(Op.DELETE, Res.TOPIC, "kept"), rule(Op.DELETE, Res.TOPIC, "ghost"))
    body = {"topics": [{"name": n, "partitions": [{"partition_index": 0, "offset": 1}]} for n in ("dr", "kept", "ghost")],
            "timeout_ms": 5000}
    got = {t.name: t.partitions[0] for t in wire.call(DELETE_RECORDS, 2, body).topics}
    assert (got["dr"].error_code, got["dr"].low_watermark) == (0, 1)
    for n in ("kept", "ghost"):
        assert (got[n].error_code, got[n].low_watermark) == (E.TOPIC_AUTHORIZATION_FAILED, -1)
    assert kafka_broker.broker.replica_manager.fetch_offset_for_timestamp(TopicPartition("kept", 0), -2).offset == 0


def test_config_apis_check_topic_and_cluster(kafka_broker: BrokerThread, wire: WireClient,
                                             authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "cfg")
    node = str(kafka_broker.broker.node_id)
    authorizer.deny(rule(Op.DESCRIBE_CONFIGS, Res.TOPIC, "cfg"), cluster(Op.DESCRIBE_CONFIGS),
                    rule(Op.ALTER_CONFIGS, Res.TOPIC, "cfg"), cluster(Op.ALTER_CONFIGS))
    body = {"resources": [{"resource_type": 2, "resource_name": "cfg", "configuration_keys": None},
                          {"resource_type": 4, "resource_name": node, "configuration_keys": None},
                          {"resource_type": 8, "resource_name": node, "configuration_keys": None}]}
    results = wire.call(DESCRIBE_CONFIGS, 4, body).results
    assert [(r.error_code, r.error_message, r.configs) for r in results] == [
        (E.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed.", []),
        (E.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.", []),
        (E.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.", [])]
    alter = {"resources": [{"resource_type": 2, "resource_name": "cfg",
                            "configs": [{"name": "retention.ms", "value": "1000"}]},
                           {"resource_type": 4, "resource_name": node,
                            "configs": [{"name": "log.cleaner.threads", "value": "2"}]}], "validate_only": False}
    assert [r.error_code for r in wire.call(ALTER_CONFIGS, 2, alter).responses] == [
        E.TOPIC_AUTHORIZATION_FAILED, E.CLUSTER_AUTHORIZATION_FAILED]
    incremental = {"resources": [{"resource_type": 2, "resource_name": "cfg", "configs": [
        {"name": "retention.ms", "config_operation": 0, "value": "1000"}]}], "validate_only": False}
    assert wire.call(INCREMENTAL_ALTER, 1, incremental).responses[0].error_code == E.TOPIC_AUTHORIZATION_FAILED
    assert "retention.ms" not in kafka_broker.broker.metadata.topic("cfg").configs
    # As Kafka, a request's own faults come before authorization: another broker's id, a key twice.
    other = {"resources": [{"resource_type": 4, "resource_name": "999", "configs": [
        {"name": "log.cleaner.threads", "config_operation": 0, "value": "2"}]},
        {"resource_type": 2, "resource_name": "cfg", "configs": [
            {"name": "retention.ms", "config_operation": 0, "value": "1"},
            {"name": "retention.ms", "config_operation": 0, "value": "2"}]}], "validate_only": False}
    assert [r.error_code for r in wire.call(INCREMENTAL_ALTER, 1, other).responses] == [E.INVALID_REQUEST] * 2
    # DESCRIBE_CONFIGS alone does not let a principal alter; ALTER_CONFIGS does.
    authorizer.deny(cluster(Op.ALTER_CONFIGS))
    assert wire.call(DESCRIBE_CONFIGS, 4, body).results[0].error_code == 0
    assert wire.call(INCREMENTAL_ALTER, 1, incremental).responses[0].error_code == 0
    assert kafka_broker.broker.metadata.topic("cfg").configs["retention.ms"] == "1000"


def test_describe_log_dirs_needs_cluster_describe(kafka_broker: BrokerThread, wire: WireClient,
                                                  authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "ld")
    assert wire.call(DESCRIBE_LOG_DIRS, 4, {"topics": None}).results
    authorizer.deny(cluster(Op.DESCRIBE))
    refused = wire.call(DESCRIBE_LOG_DIRS, 4, {"topics": None})
    assert (refused.error_code, refused.results) == (E.CLUSTER_AUTHORIZATION_FAILED, [])
    assert wire.call(DESCRIBE_LOG_DIRS, 1, {"topics": None}).results == []  # no error field before v3


# --- groups -----------------------------------------------------------------------------------


def test_find_coordinator_needs_describe(wire: WireClient, authorizer: RuleAuthorizer) -> None:
    authorizer.deny(rule(Op.DESCRIBE, Res.GROUP, "g-no"), rule(Op.DESCRIBE, Res.TRANSACTIONAL_ID, "t-no"))
    old = wire.call(FIND_COORDINATOR, 3, {"key": "g-no", "key_type": 0})
    assert (old.error_code, old.error_message, old.node_id) == (
        E.GROUP_AUTHORIZATION_FAILED, "Group authorization failed.", -1)
    assert wire.call(FIND_COORDINATOR, 3, {"key": "t-no", "key_type": 1}).error_code == (
        E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    new = wire.call(FIND_COORDINATOR, 4, {"key_type": 0, "coordinator_keys": ["g-no", "g-yes"]}).coordinators
    assert [(c.key, c.error_code) for c in new] == [("g-no", E.GROUP_AUTHORIZATION_FAILED), ("g-yes", 0)]
    assert new[1].node_id >= 0 and new[0].node_id == -1


def test_classic_group_apis_need_read(wire: WireClient, authorizer: RuleAuthorizer) -> None:
    authorizer.deny(rule(Op.READ, Res.GROUP, "g"))
    join = wire.call(JOIN, 9, {"group_id": "g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
                               "member_id": "", "protocol_type": "consumer",
                               "protocols": [{"name": "range", "metadata": b""}]})
    assert (join.error_code, join.member_id, join.generation_id) == (E.GROUP_AUTHORIZATION_FAILED, "", -1)
    sync = wire.call(SYNC, 5, {"group_id": "g", "generation_id": 1, "member_id": "m", "assignments": []})
    assert sync.error_code == E.GROUP_AUTHORIZATION_FAILED
    hb = wire.call(HEARTBEAT, 4, {"group_id": "g", "generation_id": 1, "member_id": "m"})
    assert hb.error_code == E.GROUP_AUTHORIZATION_FAILED
    for version in (0, 3, 5):
        body = {"group_id": "g", "member_id": "m", "members": [{"member_id": "m"}]}
        assert wire.call(LEAVE, version, body).error_code == E.GROUP_AUTHORIZATION_FAILED


def test_describe_list_delete_groups(kafka_broker: BrokerThread, wire: WireClient,
                                     authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "t")
    for g in ("visible", "invisible"):
        body = {"group_id": g, "generation_id_or_member_epoch": -1, "member_id": "",
                "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 0}]}]}
        assert wire.call(OFFSET_COMMIT, 8, body).topics[0].partitions[0].error_code == 0
    authorizer.deny(rule(Op.DESCRIBE, Res.GROUP, "invisible"), rule(Op.DELETE, Res.GROUP, "invisible"))
    described = wire.call(DESCRIBE_GROUPS, 5, {"groups": ["visible", "invisible"]}).groups
    assert [g.error_code for g in described] == [0, E.GROUP_AUTHORIZATION_FAILED]
    # DESCRIBE on the cluster lists every group (allowed here by default) ...
    assert sorted(g.group_id for g in wire.call(LIST_GROUPS, 4, {"states_filter": []}).groups) == [
        "invisible", "visible"]
    # ... otherwise only the groups the principal may describe.
    authorizer.rules.add(cluster(Op.DESCRIBE))
    assert [g.group_id for g in wire.call(LIST_GROUPS, 4, {"states_filter": []}).groups] == ["visible"]
    results = wire.call(DELETE_GROUPS, 2, {"groups_names": ["invisible", "visible", "invisible"]}).results
    assert {r.group_id: r.error_code for r in results} == {"invisible": E.GROUP_AUTHORIZATION_FAILED, "visible": 0}
    assert kafka_broker.broker.groups.describe_group("invisible") is not None


def test_offset_commit_group_then_topic(kafka_broker: BrokerThread, wire: WireClient,
                                        authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "ok")
    create_topic(kafka_broker, "no")

    def commit(group: str) -> dict[str, int]:
        body = {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "topics": [
            {"name": n, "partitions": [{"partition_index": 0, "committed_offset": 5}]} for n in ("ok", "no", "gone")]}
        return {t.name: t.partitions[0].error_code for t in wire.call(OFFSET_COMMIT, 8, body).topics}

    authorizer.deny(rule(Op.READ, Res.GROUP, "locked"), rule(Op.READ, Res.TOPIC, "no"), rule(Op.READ, Res.TOPIC, "gone"))
    assert commit("locked") == dict.fromkeys(("ok", "no", "gone"), E.GROUP_AUTHORIZATION_FAILED)
    assert commit("open") == {"ok": 0, "no": E.TOPIC_AUTHORIZATION_FAILED, "gone": E.TOPIC_AUTHORIZATION_FAILED}


def test_offset_fetch_group_describe_and_topic_describe(kafka_broker: BrokerThread, wire: WireClient,
                                                        authorizer: RuleAuthorizer) -> None:
    for t in ("a", "b"):
        create_topic(kafka_broker, t)
    body = {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "", "topics": [
        {"name": n, "partitions": [{"partition_index": 0, "committed_offset": 3}]} for n in ("a", "b")]}
    wire.call(OFFSET_COMMIT, 8, body)
    authorizer.deny(rule(Op.DESCRIBE, Res.GROUP, "locked"), rule(Op.DESCRIBE, Res.TOPIC, "b"))
    resp = wire.call(OFFSET_FETCH, 8, {"groups": [
        {"group_id": "locked", "topics": None},
        {"group_id": "g", "topics": None},
        {"group_id": "g", "topics": [{"name": "a", "partition_indexes": [0]}, {"name": "b", "partition_indexes": [0]}]},
    ]})
    locked, everything, named = resp.groups
    assert (locked.error_code, locked.topics) == (E.GROUP_AUTHORIZATION_FAILED, [])
    # Asking for every topic leaves out those the principal may not describe ...
    assert [(t.name, t.partitions[0].committed_offset) for t in everything.topics] == [("a", 3)]
    # ... naming them answers TOPIC_AUTHORIZATION_FAILED.
    got = {t.name: t.partitions[0] for t in named.topics}
    assert got["a"].committed_offset == 3
    assert (got["b"].error_code, got["b"].committed_offset) == (E.TOPIC_AUTHORIZATION_FAILED, -1)
    v7 = wire.call(OFFSET_FETCH, 7, {"group_id": "locked", "topics": None})
    assert v7.error_code == E.GROUP_AUTHORIZATION_FAILED


def test_offset_delete_group_delete_then_topic_read(kafka_broker: BrokerThread, wire: WireClient,
                                                    authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "a")
    create_topic(kafka_broker, "b")
    body = {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "", "topics": [
        {"name": n, "partitions": [{"partition_index": 0, "committed_offset": 3}]} for n in ("a", "b")]}
    wire.call(OFFSET_COMMIT, 8, body)
    delete = {"group_id": "g", "topics": [{"name": n, "partitions": [{"partition_index": 0}]} for n in ("a", "b")]}
    authorizer.deny(rule(Op.DELETE, Res.GROUP, "g"))
    assert wire.call(OFFSET_DELETE, 0, delete).error_code == E.GROUP_AUTHORIZATION_FAILED
    authorizer.deny(rule(Op.READ, Res.TOPIC, "b"))
    resp = wire.call(OFFSET_DELETE, 0, delete)
    assert resp.error_code == 0
    assert {t.name: t.partitions[0].error_code for t in resp.topics} == {"a": 0, "b": E.TOPIC_AUTHORIZATION_FAILED}


# --- producers and transactions ---------------------------------------------------------------


def _init_pid(wire: WireClient, txn_id: str | None) -> Any:
    return wire.call(INIT_PID, 4, {"transactional_id": txn_id, "transaction_timeout_ms": 60000,
                                   "producer_id": -1, "producer_epoch": -1})


def test_init_producer_id_idempotent_needs_idempotent_write_or_some_write(
        kafka_broker: BrokerThread, wire: WireClient) -> None:
    auth = RuleAuthorizer()
    install(kafka_broker, auth)
    auth.deny(cluster(Op.IDEMPOTENT_WRITE), rule(Op.WRITE, Res.TOPIC))
    refused = _init_pid(wire, None)
    assert (refused.error_code, refused.producer_id) == (E.CLUSTER_AUTHORIZATION_FAILED, -1)
    # WRITE on some topic is enough (KIP-679) ...
    auth.allow(rule(Op.WRITE, Res.TOPIC, "one-topic"))
    assert _init_pid(wire, None).error_code == 0
    # ... as is IDEMPOTENT_WRITE on the cluster.
    auth.allow(cluster(Op.IDEMPOTENT_WRITE))
    assert _init_pid(wire, None).error_code == 0


def test_transactional_apis_need_transactional_id_write(kafka_broker: BrokerThread, wire: WireClient,
                                                        authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "t")
    create_topic(kafka_broker, "closed")
    authorizer.deny(rule(Op.WRITE, Res.TRANSACTIONAL_ID, "no"))
    assert _init_pid(wire, "no").error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    ok = _init_pid(wire, "yes")
    assert ok.error_code == 0
    pid, epoch = ok.producer_id, ok.producer_epoch
    add = {"v3_and_below_transactional_id": "no", "v3_and_below_producer_id": pid,
           "v3_and_below_producer_epoch": epoch, "v3_and_below_topics": [{"name": "t", "partitions": [0]}]}
    res = wire.call(ADD_PARTITIONS, 3, add).results_by_topic_v3_and_below
    assert res[0].results_by_partition[0].partition_error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # WRITE on every topic, else the refused ones fail and the rest are not attempted.
    authorizer.deny(rule(Op.WRITE, Res.TOPIC, "closed"))
    add.update(v3_and_below_transactional_id="yes", v3_and_below_topics=[
        {"name": "t", "partitions": [0]}, {"name": "closed", "partitions": [0]}])
    res = wire.call(ADD_PARTITIONS, 3, add).results_by_topic_v3_and_below
    assert {r.name: r.results_by_partition[0].partition_error_code for r in res} == {
        "t": E.OPERATION_NOT_ATTEMPTED, "closed": E.TOPIC_AUTHORIZATION_FAILED}
    authorizer.deny(rule(Op.WRITE, Res.TRANSACTIONAL_ID, "yes"), rule(Op.READ, Res.GROUP, "g"))
    off = {"transactional_id": "yes", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"}
    assert wire.call(ADD_OFFSETS, 3, off).error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    end = {"transactional_id": "yes", "producer_id": pid, "producer_epoch": epoch, "committed": True}
    assert wire.call(END_TXN, 3, end).error_code == E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    authorizer.deny(rule(Op.READ, Res.GROUP, "g"))
    assert wire.call(ADD_OFFSETS, 3, off).error_code == E.GROUP_AUTHORIZATION_FAILED


def test_txn_offset_commit_checks_in_kafkas_order(kafka_broker: BrokerThread, wire: WireClient,
                                                  authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "t")
    create_topic(kafka_broker, "closed")

    def commit() -> dict[str, int]:
        body = {"transactional_id": "tx", "group_id": "g", "producer_id": 1, "producer_epoch": 0,
                "generation_id": -1, "member_id": "", "topics": [
                    {"name": n, "partitions": [{"partition_index": 0, "committed_offset": 1}]} for n in ("t", "closed")]}
        return {t.name: t.partitions[0].error_code for t in wire.call(TXN_OFFSET_COMMIT, 3, body).topics}

    authorizer.deny(rule(Op.WRITE, Res.TRANSACTIONAL_ID, "tx"), rule(Op.READ, Res.GROUP, "g"))
    assert commit() == dict.fromkeys(("t", "closed"), E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    authorizer.deny(rule(Op.READ, Res.GROUP, "g"))
    assert commit() == dict.fromkeys(("t", "closed"), E.GROUP_AUTHORIZATION_FAILED)
    authorizer.deny(rule(Op.READ, Res.TOPIC, "closed"))
    got = commit()
    assert got["closed"] == E.TOPIC_AUTHORIZATION_FAILED and got["t"] != E.TOPIC_AUTHORIZATION_FAILED


def test_broker_only_apis_need_cluster_action(kafka_broker: BrokerThread, wire: WireClient,
                                              authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "t")
    markers = {"markers": [{"producer_id": 42, "producer_epoch": 0, "transaction_result": False,
                            "topics": [{"name": "t", "partition_indexes": [0]}], "coordinator_epoch": 0}]}
    authorizer.deny(cluster(Op.ALTER), cluster(Op.CLUSTER_ACTION))
    resp = wire.call(WRITE_MARKERS, 1, markers)
    assert resp.markers[0].topics[0].partitions[0].error_code == E.CLUSTER_AUTHORIZATION_FAILED
    assert kafka_broker.broker.replica_manager.fetch_offset_for_timestamp(TopicPartition("t", 0), -1).offset == 0
    add_v4 = {"transactions": [{"transactional_id": "x", "producer_id": 1, "producer_epoch": 0, "verify_only": True,
                                "topics": [{"name": "t", "partitions": [0]}]}]}
    refused = wire.call(ADD_PARTITIONS, 4, add_v4)
    assert (refused.error_code, refused.results_by_transaction) == (E.CLUSTER_AUTHORIZATION_FAILED, [])
    # CLUSTER_ACTION (or ALTER) on the cluster lets them through.
    authorizer.deny(cluster(Op.ALTER))
    resp = wire.call(WRITE_MARKERS, 1, markers)
    assert resp.markers[0].topics[0].partitions[0].error_code != E.CLUSTER_AUTHORIZATION_FAILED
    assert wire.call(ADD_PARTITIONS, 4, add_v4).error_code == 0


def test_describe_and_list_transactions(kafka_broker: BrokerThread, wire: WireClient,
                                        authorizer: RuleAuthorizer) -> None:
    for txn in ("seen", "unseen"):
        assert _init_pid(wire, txn).error_code == 0
    authorizer.deny(rule(Op.DESCRIBE, Res.TRANSACTIONAL_ID, "unseen"))
    states = wire.call(DESCRIBE_TXNS, 0, {"transactional_ids": ["seen", "unseen"]}).transaction_states
    assert [(s.transactional_id, s.error_code) for s in states] == [
        ("seen", 0), ("unseen", E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)]
    assert states[1].transaction_state == "" and states[1].topics == []
    listed = wire.call(LIST_TXNS, 0, {"state_filters": [], "producer_id_filters": []}).transaction_states
    assert [s.transactional_id for s in listed] == ["seen"]


def test_describe_producers_needs_read(kafka_broker: BrokerThread, wire: WireClient,
                                       authorizer: RuleAuthorizer) -> None:
    create_topic(kafka_broker, "p")
    create_topic(kafka_broker, "q")
    authorizer.deny(rule(Op.READ, Res.TOPIC, "q"), rule(Op.READ, Res.TOPIC, "ghost"))
    body = {"topics": [{"name": n, "partition_indexes": [0, 0]} for n in ("p", "q", "ghost")]}
    got = {t.name: t.partitions for t in wire.call(DESCRIBE_PRODUCERS, 0, body).topics}
    assert [p.error_code for p in got["p"]] == [0, 0]
    for n in ("q", "ghost"):
        assert [(p.error_code, p.error_message) for p in got[n]] == [
            (E.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed.")] * 2


def test_without_an_authorizer_nothing_is_asked(kafka_broker: BrokerThread, wire: WireClient) -> None:
    """The broker without an authorizer serves what the test authorizer's rules would refuse."""
    create_topic(kafka_broker, "t")
    assert kafka_broker.broker.authorizer is None
    assert produce_one(wire, "t", 0, batch([b"v"])).error_code == 0
    assert partitions_of(fetch(wire, {"t": {0: 0}}))[("t", 0)].records
    assert _init_pid(wire, None).error_code == 0
    assert wire.call(DESCRIBE_LOG_DIRS, 4, {"topics": None}).error_code == 0
