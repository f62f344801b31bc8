"""``kbroker transactions``: options, error paths, and the transaction admin calls end to end.

The end-to-end tests run twice, against kbroker and against Apache Kafka (tools/kafka_reference),
with a real transactional producer (confluent-kafka). A hanging transaction is made by hand: a
transactional batch of an idempotent producer id no coordinator knows, appended with partition
verification off (as Kafka allows). Kafka's own kafka-transactions.sh prints the same tables.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from ci_helpers import need, reference_unavailable
from ci_helpers import reference_kafka as start_reference_kafka
from confluent_kafka import Producer
from construct import Container
from wait_helpers import wait_until

from kbroker.cli import main
from kbroker.cli.transactions import format_table
from kbroker.client import KafkaClient, KafkaError
from kbroker.client import transactions as tx
from kbroker.client.cluster import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from kbroker.client.data import FETCH, decode_records
from kbroker.client.groups import FIND_COORDINATOR
from kbroker.common import TopicPartition
from kbroker.records.builder import build_batch
from kbroker.testing import BrokerThread

Runner = Any  # the `cli` fixture from conftest.py

INIT_PRODUCER_ID = 22
PRODUCE = 0
#: Produce v11: the last version before KIP-890's implicit partition adds (a transaction-version-1 request).
PRODUCE_TV1 = 11
READ_COMMITTED = 1

PRODUCERS_HEADER = ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence", "LastTimestamp",
                    "CurrentTransactionStartOffset"]
HANGING_HEADER = ["Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch", "StartOffset",
                  "LastTimestamp", "Duration(min)"]


def _table(out: str) -> list[list[str]]:
    """Rows of a printed table, each cell stripped of its padding."""
    return [[c.strip() for c in line.rstrip("\t").split("\t")] for line in out.splitlines() if line.strip()]


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connecting is refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["transactions", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the table and the options, without a broker ------------------------------------------------


def test_tables_are_printed_as_kafkas_tool_prints_them() -> None:
    # Kafka's prettyPrintTable: every cell padded to its column's width, then a tab, also the last.
    assert format_table(["A", "Long"], [["xyz", 1], ["", 22]]) == "A  \tLong\t\nxyz\t1   \t\n   \t22  \t"
    assert format_table(["Only", "Header"], []) == "Only\tHeader\t"


@pytest.mark.parametrize(("argv", "message"), [
    (["--describe"], "--describe needs --transactional-id"),
    (["--describe-producers", "--topic", "t"], "--describe-producers needs --topic and --partition"),
    (["--abort", "--partition", "0", "--start-offset", "1"], "--abort needs --topic and --partition"),
    (["--abort", "--topic", "t", "--partition", "0"],
     "The transaction to abort must be identified either with --start-offset or with --producer-id, "
     "--producer-epoch and --coordinator-epoch"),
    (["--abort", "--topic", "t", "--partition", "0", "--producer-id", "5", "--coordinator-epoch", "0"],
     "Missing required argument --producer-epoch"),
    (["--abort", "--topic", "t", "--partition", "0", "--producer-id", "5", "--producer-epoch", "0"],
     "Missing required argument --coordinator-epoch"),
    (["--abort", "--topic", "t", "--partition", "0", "--producer-id", "5", "--producer-epoch", "40000",
      "--coordinator-epoch", "0"], "--producer-epoch must be between 0 and 32767"),
    (["--abort", "--topic", "t", "--partition", "0", "--producer-id", "5", "--producer-id", "6",
      "--producer-epoch", "0", "--coordinator-epoch", "0"], "--abort takes one --producer-id"),
    (["--abort", "--topic", "t", "--partition", "0", "--start-offset", "3", "--producer-id", "5"],
     "--abort takes either --start-offset or --producer-id"),
    (["--find-hanging"], "--find-hanging needs --topic or --broker-id to limit the scope of the search"),
    (["--find-hanging", "--broker-id", "1", "--partition", "0"], "--partition needs --topic"),
    (["--find-hanging", "--topic", "t", "--max-transaction-timeout", "-1"],
     "--max-transaction-timeout must not be negative"),
    (["--list", "--topic", "t"], "--topic applies only to --describe-producers, --find-hanging, --abort"),
    (["--describe", "--transactional-id", "x", "--state", "Ongoing"], "--state applies only to --list"),
    (["--describe-producers", "--topic", "t", "--partition", "0", "--start-offset", "0"],
     "--start-offset applies only to --abort"),
    (["--list", "--max-transaction-timeout", "1"], "--max-transaction-timeout applies only to --find-hanging"),
    (["--describe", "--transactional-id", "x", "--transactional-id-pattern", "x.*"],
     "--transactional-id-pattern applies only to --list"),
])
def test_usage_errors_are_reported_before_connecting(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                      message: str) -> None:
    # The bootstrap server refuses connections: a usage error must not get that far.
    code, out, err = _run(capsys, *argv, "--bootstrap-server", f"127.0.0.1:{_closed_port()}")
    assert (code, out) == (1, "")
    assert err.startswith(f"kbroker: error: INVALID_REQUEST: {message}"), err


@pytest.mark.parametrize("argv", [
    ["--list", "--describe"],
    ["--list", "--state", "Running"],
    ["--describe-producers", "--topic", "t", "--partition", "zero"],
    [],
])
def test_malformed_command_lines_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and "usage: kbroker transactions" in err


@pytest.mark.parametrize("argv", [
    ["--list"],
    ["--describe", "--transactional-id", "x"],
    ["--describe-producers", "--topic", "t", "--partition", "0"],
    ["--find-hanging", "--topic", "t"],
    ["--abort", "--topic", "t", "--partition", "0", "--start-offset", "0"],
    ["--abort", "--topic", "t", "--partition", "0", "--producer-id", "1", "--producer-epoch", "0",
     "--coordinator-epoch", "0"],
])
def test_broker_down_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    port = _closed_port()
    code, out, err = _run(capsys, *argv, "--bootstrap-server", f"127.0.0.1:{port}")
    assert (code, out) == (1, "")
    assert err.startswith(f"kbroker: error: NETWORK_EXCEPTION: Connection to 127.0.0.1:{port} "), err
    assert err.count("\n") == 1


def _marker_response(producer_id: int, topic: str, partitions: list[tuple[int, int]]) -> Container:
    return Container(markers=[Container(producer_id=producer_id, topics=[Container(
        name=topic, partitions=[Container(partition_index=p, error_code=e) for p, e in partitions])])])


def test_abort_response_must_answer_exactly_the_marker_sent() -> None:
    tp = TopicPartition("t", 0)
    assert tx._marker_error(_marker_response(7, "t", [(0, 0)]), tp, 7) == 0
    assert tx._marker_error(_marker_response(7, "t", [(0, 47)]), tp, 7) == 47
    for resp in (_marker_response(8, "t", [(0, 0)]), _marker_response(7, "u", [(0, 0)]),
                 _marker_response(7, "t", [(1, 0)]), _marker_response(7, "t", [(0, 0), (1, 0)]),
                 Container(markers=[])):
        with pytest.raises(KafkaError, match="WriteTxnMarkers response included unexpected"):
            tx._marker_error(resp, tp, 7)


# -- the admin calls' retries and errors, against a scripted broker ----------------------------------


class ScriptedClient:
    """A KafkaClient stand-in: one broker (id 1) leading every partition, answers from a script.

    ``answers[api_key]`` are the responses to that API's requests, in order; every request
    is recorded in ``sent`` as ``(api_key, body, node_id)``.
    """

    retry = KafkaClient.retry

    def __init__(self, answers: dict[int, list[Container]], *, versions: dict[int, int] | None = None,
                 topics: dict[str, int] | None = None) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.versions = versions or {}
        self.topics = {"t": 2} if topics is None else topics
        self.sent: list[tuple[int, Any, int | None]] = []

    def metadata(self, topics: Any = None, **_: Any) -> ClusterMetadata:
        md = ClusterMetadata("cluster", 1, {1: BrokerInfo(1, "127.0.0.1", 9092)})
        for name, count in self.topics.items():
            md.topics[name] = TopicInfo(name, 0, None, False,
                                        tuple(PartitionInfo(i, 1, (1,), (1,)) for i in range(count)))
        return md

    def topic(self, name: str, **_: Any) -> TopicInfo:
        return self.metadata([name]).topic(name)

    def version_for(self, api_key: int, node_id: int | None = None) -> int:
        return self.versions.get(api_key, 99)

    def request(self, api_key: int, body: Any, node_id: int | None = None) -> Container:
        self.sent.append((api_key, body, node_id))
        return self.answers[api_key].pop(0)

    def request_versioned(self, api_key: int, body: Any, node_id: int | None = None) -> tuple[int, Container]:
        return 4, self.request(api_key, body, node_id)

    def count(self, api_key: int) -> int:
        return sum(1 for key, _, _ in self.sent if key == api_key)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tx, "BACKOFF_S", 0.0)


def _coordinator(key: str, node: int = 1, error: int = 0) -> Container:
    return Container(coordinators=[Container(key=key, node_id=node, error_code=error, error_message=None)])


def _listing(error: int, *states: tuple[str, int, str]) -> Container:
    return Container(error_code=error, unknown_state_filters=[], transaction_states=[
        Container(transactional_id=t, producer_id=p, transaction_state=s) for t, p, s in states])


def _described(tid: str, error: int = 0, state: str = "Ongoing") -> Container:
    return Container(transactional_id=tid, error_code=error, transaction_state=state, transaction_timeout_ms=60000,
                     transaction_start_time_ms=1000, producer_id=7, producer_epoch=2,
                     topics=[Container(topic="t", partitions=[1, 0])])


def _producers_answer(error: int, *active: tuple[int, int]) -> Container:
    return Container(topics=[Container(name="t", partitions=[Container(
        partition_index=0, error_code=error, error_message=None, active_producers=[
            Container(producer_id=pid, producer_epoch=0, last_sequence=4, last_timestamp=5,
                      coordinator_epoch=-1, current_txn_start_offset=start) for pid, start in active])])])


def test_list_transactions_waits_for_a_loading_coordinator(no_backoff: None) -> None:
    client = ScriptedClient({tx.LIST_TRANSACTIONS: [
        _listing(14), _listing(0, ("a", 7, "Ongoing"), ("b", 8, "Empty"))]})
    got = tx.list_transactions(cast(KafkaClient, client), states=["Ongoing"], producer_ids=[7], duration_ms=5)
    assert got == {1: [tx.TransactionListing("a", 7, "Ongoing"), tx.TransactionListing("b", 8, "Empty")]}
    assert client.count(tx.LIST_TRANSACTIONS) == 2
    body = client.sent[-1][1]
    assert (body["state_filters"], body["producer_id_filters"], body["duration_filter"]) == (["Ongoing"], [7], 5)


def test_list_transactions_errors(no_backoff: None) -> None:
    client = ScriptedClient({tx.LIST_TRANSACTIONS: [_listing(15)]})
    with pytest.raises(KafkaError, match="coordinator is shutting down") as e:
        tx.list_transactions(cast(KafkaClient, client))
    assert e.value.name == "COORDINATOR_NOT_AVAILABLE"
    # A version-0 broker cannot filter by duration: refused before anything is sent, as Kafka's client does.
    client = ScriptedClient({}, versions={tx.LIST_TRANSACTIONS: 0})
    with pytest.raises(KafkaError, match="Duration filter can be set only when using API version 1") as e:
        tx.list_transactions(cast(KafkaClient, client), duration_ms=0)
    assert e.value.name == "UNSUPPORTED_VERSION" and client.sent == []
    client = ScriptedClient({}, versions={tx.LIST_TRANSACTIONS: 1})
    with pytest.raises(KafkaError, match="Transactional id pattern filter can be set only when using API version 2"):
        tx.list_transactions(cast(KafkaClient, client), transactional_id_pattern="a.*")
    assert client.sent == []


def test_describe_transactions_finds_a_moved_coordinator_again(no_backoff: None) -> None:
    client = ScriptedClient({
        FIND_COORDINATOR: [_coordinator("x"), _coordinator("gone"), _coordinator("x")],
        tx.DESCRIBE_TRANSACTIONS: [
            Container(transaction_states=[_described("x", error=16), _described("gone", error=105),
                                          _described("unasked")]),
            Container(transaction_states=[_described("x")]),
        ]})
    got = tx.describe_transactions(cast(KafkaClient, client), ["x", "gone"])
    assert got["x"] == tx.TransactionDescription(1, "x", "Ongoing", 7, 2, 60000, 1000,
                                                 (TopicPartition("t", 0), TopicPartition("t", 1)))
    gone = got["gone"]
    assert isinstance(gone, KafkaError) and str(gone) == ("TRANSACTIONAL_ID_NOT_FOUND: Transactional id 'gone' "
                                                          "does not exist.")
    assert set(got) == {"x", "gone"} and client.count(FIND_COORDINATOR) == 3


def test_describe_producers_retries_a_moved_leader_only_when_asking_the_leader(no_backoff: None) -> None:
    client = ScriptedClient({tx.DESCRIBE_PRODUCERS: [_producers_answer(6), _producers_answer(0, (3, 10), (4, -1))]})
    got = tx.describe_partition_producers(cast(KafkaClient, client), TopicPartition("t", 0))
    assert got == [tx.ProducerState(3, 0, 4, 5, None, 10), tx.ProducerState(4, 0, 4, 5, None, None)]
    assert client.count(tx.DESCRIBE_PRODUCERS) == 2
    client = ScriptedClient({tx.DESCRIBE_PRODUCERS: [_producers_answer(6)]})
    with pytest.raises(KafkaError) as e:
        tx.describe_partition_producers(cast(KafkaClient, client), TopicPartition("t", 0), broker_id=1)
    assert str(e.value).startswith("NOT_LEADER_OR_FOLLOWER: Failed to describe producers for partition t-0 "
                                   "on broker 1: ")
    assert client.sent[0][2] == 1


def test_abort_sends_one_abort_marker_to_the_leader(no_backoff: None) -> None:
    def answer(error: int) -> Container:
        return Container(markers=[Container(producer_id=7, topics=[Container(
            name="t", partitions=[Container(partition_index=1, error_code=error)])])])

    client = ScriptedClient({tx.WRITE_TXN_MARKERS: [answer(6), answer(0)]})
    tx.abort_transaction(cast(KafkaClient, client), TopicPartition("t", 1), 7, 2, 4)
    assert client.count(tx.WRITE_TXN_MARKERS) == 2  # NOT_LEADER_OR_FOLLOWER: the leader is looked up again
    (marker,) = client.sent[-1][1]["markers"]
    assert marker == {"producer_id": 7, "producer_epoch": 2, "transaction_result": False,
                      "topics": [{"name": "t", "partition_indexes": [1]}], "coordinator_epoch": 4,
                      "transaction_version": 0}
    assert client.sent[-1][2] == 1
    client = ScriptedClient({tx.WRITE_TXN_MARKERS: [answer(31)]})
    with pytest.raises(KafkaError) as e:
        tx.abort_transaction(cast(KafkaClient, client), TopicPartition("t", 1), 7, 2, 4)
    assert e.value.name == "CLUSTER_AUTHORIZATION_FAILED" and client.count(tx.WRITE_TXN_MARKERS) == 1


# -- against a broker: producers and partitions ------------------------------------------------------


def test_describe_producers_of_an_idempotent_producer(cli: Runner, kafka_bootstrap: str) -> None:
    assert cli("topics", "--create", "--topic", "t", "--partitions", "2").code == 0
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    before = int(time.time() * 1000)
    for i in range(3):
        producer.produce("t", f"v{i}".encode(), partition=1)
    assert producer.flush(10) == 0

    r = cli("transactions", "--describe-producers", "--topic", "t", "--partition", "1")
    assert r.code == 0, r.err
    header, *rows = _table(r.out)
    assert header == PRODUCERS_HEADER
    assert len(rows) == 1
    pid, epoch, coordinator_epoch, last_seq, last_ts, txn_start = rows[0]
    assert (epoch, coordinator_epoch, last_seq, txn_start) == ("0", "-1", "2", "None")
    assert int(pid) >= 0 and before - 5000 <= int(last_ts) <= int(time.time() * 1000) + 5000
    r = cli("transactions", "--describe-producers", "--topic", "t", "--partition", "0")
    assert (r.code, _table(r.out)) == (0, [PRODUCERS_HEADER])
    # No open transaction anywhere in the topic: nothing hangs, whatever the age limit.
    r = cli("transactions", "--find-hanging", "--topic", "t", "--max-transaction-timeout", "0")
    assert (r.code, _table(r.out)) == (0, [HANGING_HEADER]), r.err
    r = cli("transactions", "--find-hanging", "--broker-id", "1", "--max-transaction-timeout", "0")
    assert (r.code, _table(r.out)) == (0, [HANGING_HEADER]), r.err


def test_unknown_topics_and_partitions(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "t", "--partitions", "2").code == 0
    for argv, what in [
        (["--describe-producers", "--topic", "t", "--partition", "2"], "Partition t-2 does not exist."),
        (["--describe-producers", "--topic", "t", "--partition", "-1"], "Partition t--1 does not exist."),
        (["--describe-producers", "--topic", "ghost", "--partition", "0"], "Topic 'ghost' does not exist."),
        (["--find-hanging", "--topic", "ghost"], "Topic 'ghost' does not exist."),
        (["--find-hanging", "--topic", "t", "--partition", "5"], "Partition t-5 does not exist."),
        (["--abort", "--topic", "t", "--partition", "9", "--start-offset", "0"], "Partition t-9 does not exist."),
        (["--abort", "--topic", "ghost", "--partition", "0", "--producer-id", "1", "--producer-epoch", "0",
          "--coordinator-epoch", "0"], "Topic 'ghost' does not exist."),
    ]:
        r = cli("transactions", *argv)
        assert (r.code, r.out, r.err) == (1, "", f"kbroker: error: UNKNOWN_TOPIC_OR_PARTITION: {what}\n"), argv


def test_abort_by_start_offset_needs_an_open_transaction_there(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "t", "--partitions", "1").code == 0
    assert cli("produce", "--topic", "t", stdin="a\nb\n").code == 0
    r = cli("transactions", "--abort", "--topic", "t", "--partition", "0", "--start-offset", "0")
    assert (r.code, r.err) == (1, "kbroker: error: INVALID_REQUEST: Could not find any open transactions "
                                  "starting at offset 0 on partition t-0\n")


def test_describe_producers_names_the_broker_asked(cli: Runner) -> None:
    assert cli("topics", "--create", "--topic", "t", "--partitions", "1").code == 0
    r = cli("transactions", "--describe-producers", "--topic", "t", "--partition", "0", "--broker-id", "1")
    assert (r.code, _table(r.out)) == (0, [PRODUCERS_HEADER]), r.err
    r = cli("transactions", "--describe-producers", "--topic", "t", "--partition", "0", "--broker-id", "7")
    assert r.code == 1 and r.err.startswith("kbroker: error: LEADER_NOT_AVAILABLE: Broker 7 is not in the "
                                            "cluster metadata."), r.err


# -- against a broker with a transaction coordinator: kbroker, and Apache Kafka as the reference ----------

#: Broker settings for the end-to-end tests: transactional batches are appended without asking the
#: coordinator, so a test can make a hanging transaction (Kafka's setting; its default is true).
NO_VERIFICATION = {"transaction.partition.verification.enable": "false"}


@pytest.fixture(scope="module")
def reference_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap of one Apache Kafka (tools/kafka_reference) for this module's tests."""
    with start_reference_kafka(tmp_path_factory.mktemp("kafka-reference"), NO_VERIFICATION) as kafka:
        yield kafka.bootstrap


@pytest.fixture(params=["kbroker", "kafka"])
def txn_bootstrap(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A broker with a transaction coordinator: kbroker, or the reference Kafka (shared by the module)."""
    if request.param == "kafka":
        yield request.getfixturevalue("reference_kafka")
        return
    with BrokerThread(tmp_path / "data", NO_VERIFICATION) as broker:
        yield broker.bootstrap


@pytest.fixture
def tcli(capsys: pytest.CaptureFixture[str], txn_bootstrap: str) -> Runner:
    """``tcli("--list")``: ``kbroker transactions`` against ``txn_bootstrap``."""
    def run(*argv: str) -> tuple[int, str, str]:
        return _run(capsys, *argv, "--bootstrap-server", txn_bootstrap)
    return run


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    assert main(["topics", "--create", "--topic", name, "--partitions", str(partitions),
                 "--bootstrap-server", bootstrap]) == 0


def _transactional_producer(bootstrap: str, txn_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 0})
    producer.init_transactions(20)
    return producer


def _open_raw_transaction(client: KafkaClient, tp: TopicPartition, *, producer_epoch: int = 0,
                          producer_id: int | None = None, base_sequence: int = 0) -> tuple[int, int]:
    """Append a transactional batch of an idempotent producer id (no coordinator knows it).

    Returns ``(producer id, base offset)``. The batch goes out as a transaction-version-1
    Produce (v11 at most), which the leader appends without the coordinator when
    partition verification is off.
    """
    if producer_id is None:
        deadline = time.monotonic() + 15
        while True:
            resp = client.request(INIT_PRODUCER_ID, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                     "producer_id": -1, "producer_epoch": -1})
            # A Kafka just started answers COORDINATOR_LOAD_IN_PROGRESS until its first id block arrives.
            if resp.error_code != 14 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert resp.error_code == 0, resp
        producer_id = int(resp.producer_id)
    batch = build_batch([(None, b"hanging-1"), (None, b"hanging-2")], producer_id=producer_id,
                        producer_epoch=producer_epoch, base_sequence=base_sequence, transactional=True)
    body = {"transactional_id": "nobody-knows-me", "acks": -1, "timeout_ms": 30000,
            "topic_data": [{"name": tp.topic, "partition_data": [{"index": tp.partition, "records": batch}]}]}
    deadline = time.monotonic() + 15
    while True:
        leader = client.topic(tp.topic).partition(tp.partition).leader
        version = min(PRODUCE_TV1, client.version_for(PRODUCE, leader))
        _, resp = client.connection(leader).request(PRODUCE, body, version=version)
        assert resp is not None
        part = resp.responses[0].partition_responses[0]
        # A Kafka broker names itself leader in the metadata a moment before its replica
        # manager has become leader of a new partition: NOT_LEADER_OR_FOLLOWER meanwhile.
        if part.error_code != 6 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert part.error_code == 0, part
    return producer_id, int(part.base_offset)


def _read_committed(client: KafkaClient, tp: TopicPartition) -> tuple[list[bytes], int]:
    """Values a read_committed consumer sees from offset 0, and the last stable offset."""
    leader = client.topic(tp.topic).partition(tp.partition).leader
    body = {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20,
            "isolation_level": READ_COMMITTED, "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": tp.topic, "partitions": [{
                "partition": tp.partition, "current_leader_epoch": -1, "fetch_offset": 0, "last_fetched_epoch": -1,
                "log_start_offset": -1, "partition_max_bytes": 1 << 20}]}],
            "forgotten_topics_data": [], "rack_id": ""}
    resp = client.request(FETCH, body, leader)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0, p
    aborted = [(a.producer_id, a.first_offset) for a in p.aborted_transactions or ()]
    records, _, _ = decode_records(p.records, 0, aborted)
    return [r.value for r in records], int(p.last_stable_offset)


def _listed(out: str, txn_id: str) -> list[list[str]]:
    """The ``--list`` rows of one transactional id (the reference Kafka is shared by several tests)."""
    header, *rows = _table(out)
    assert header == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
    return [r for r in rows if r[0] == txn_id]


def test_list_and_describe_a_transaction_in_flight(tcli: Runner, txn_bootstrap: str) -> None:
    _create_topic(txn_bootstrap, "inflight", 2)
    producer = _transactional_producer(txn_bootstrap, "tx-inflight")
    producer.begin_transaction()
    before = int(time.time() * 1000)
    producer.produce("inflight", b"a", partition=0)
    producer.produce("inflight", b"b", partition=1)
    assert producer.flush(10) == 0
    time.sleep(0.05)  # the transaction has run for a while: duration filters below 50 ms keep it

    code, out, err = tcli("--list")
    assert code == 0, err
    rows = _listed(out, "tx-inflight")
    assert len(rows) == 1 and rows[0][1::2] == ["1", "Ongoing"]
    pid = rows[0][2]

    def listed(*filters: str) -> list[list[str]]:
        code, out, err = tcli("--list", *filters)
        assert code == 0, err
        return _listed(out, "tx-inflight")

    assert listed("--state", "Ongoing", "--state", "Empty") == rows
    assert listed("--state", "CompleteCommit") == []
    assert listed("--producer-id", pid) == rows
    assert listed("--producer-id", str(int(pid) + 1000)) == []
    assert listed("--duration-filter", "10") == rows
    assert listed("--duration-filter", "3600000") == []
    assert listed("--transactional-id-pattern", "tx-in.*") == rows
    assert listed("--transactional-id-pattern", "tx-in") == []  # the whole id must match

    code, out, err = tcli("--describe", "--transactional-id", "tx-inflight")
    assert code == 0, err
    header, row = _table(out)
    assert header == ["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch", "TransactionState",
                      "TransactionTimeoutMs", "CurrentTransactionStartTimeMs", "TransactionDurationMs",
                      "TopicPartitions"]
    assert row[:6] == ["1", "tx-inflight", pid, "0", "Ongoing", "60000"]
    assert before - 5000 <= int(row[6]) <= before + 5000 and int(row[7]) >= 0
    assert row[8] == "inflight-0,inflight-1"

    code, out, err = tcli("--describe-producers", "--topic", "inflight", "--partition", "1")
    assert code == 0, err
    assert [(r[0], r[5]) for r in _table(out)[1:]] == [(pid, "0")]
    # Open but known to its coordinator in this very partition: not hanging, however old.
    code, out, err = tcli("--find-hanging", "--topic", "inflight", "--max-transaction-timeout", "0")
    assert (code, _table(out)) == (0, [HANGING_HEADER]), err

    producer.commit_transaction(10)

    def described() -> list[str]:
        code, out, err = tcli("--describe", "--transactional-id", "tx-inflight")
        assert code == 0, err
        return _table(out)[1]

    # EndTxn answers in PrepareCommit; CompleteCommit follows once the markers are written.
    wait_until(lambda: described()[4] == "CompleteCommit", what="the transaction to complete", interval=0.05)
    assert described()[8] == ""
    assert listed("--state", "CompleteCommit") == [["tx-inflight", "1", pid, "CompleteCommit"]]
    code, out, err = tcli("--describe-producers", "--topic", "inflight", "--partition", "1")
    assert [(r[0], r[2], r[5]) for r in _table(out)[1:]] == [(pid, "0", "None")]


def test_describe_an_unknown_transactional_id(tcli: Runner) -> None:
    code, out, err = tcli("--describe", "--transactional-id", "ghost")
    assert (code, out, err) == (1, "", "kbroker: error: TRANSACTIONAL_ID_NOT_FOUND: Transactional id 'ghost' "
                                       "does not exist.\n")


def test_find_and_abort_a_hanging_transaction(tcli: Runner, txn_bootstrap: str) -> None:
    _create_topic(txn_bootstrap, "hang", 2)
    tp = TopicPartition("hang", 1)
    with KafkaClient(txn_bootstrap) as client:
        pid, offset = _open_raw_transaction(client, tp)
        assert _read_committed(client, tp) == ([], 0)  # the open transaction holds the LSO at its start
        time.sleep(0.01)

        code, out, err = tcli("--find-hanging", "--topic", "hang", "--max-transaction-timeout", "0")
        assert code == 0, err
        header, *rows = _table(out)
        assert header == HANGING_HEADER
        assert [r[:6] for r in rows] == [["hang", "1", str(pid), "0", "-1", str(offset)]]
        assert rows[0][7] == "0"
        # Younger than the default 15 minutes: not yet a candidate.
        assert _table(tcli("--find-hanging", "--topic", "hang")[1]) == [HANGING_HEADER]
        assert _table(tcli("--find-hanging", "--topic", "hang", "--partition", "0",
                           "--max-transaction-timeout", "0")[1]) == [HANGING_HEADER]
        code, out, err = tcli("--find-hanging", "--broker-id", "1", "--max-transaction-timeout", "0")
        assert code == 0 and [r[:6] for r in _table(out)[1:] if r[0] == "hang"] == \
            [["hang", "1", str(pid), "0", "-1", str(offset)]], err

        code, out, err = tcli("--abort", "--topic", "hang", "--partition", "1", "--start-offset", str(offset))
        assert (code, out) == (0, ""), err
        code, out, err = tcli("--describe-producers", "--topic", "hang", "--partition", "1")
        assert [(r[0], r[1], r[2], r[5]) for r in _table(out)[1:]] == [(str(pid), "0", "0", "None")]
        assert _table(tcli("--find-hanging", "--topic", "hang", "--max-transaction-timeout", "0")[1]) == \
            [HANGING_HEADER]
        values, lso = _read_committed(client, tp)
        assert values == [] and lso == offset + 3  # two records and the ABORT marker

        # The same transaction cannot be aborted twice by its start offset.
        code, out, err = tcli("--abort", "--topic", "hang", "--partition", "1", "--start-offset", str(offset))
        assert code == 1 and "Could not find any open transactions starting at offset" in err


def test_a_partition_outside_its_known_transaction_hangs(tcli: Runner, txn_bootstrap: str) -> None:
    """The coordinator knows the producer's transaction, but not in this partition: no marker will come."""
    _create_topic(txn_bootstrap, "stray", 2)
    producer = _transactional_producer(txn_bootstrap, "tx-stray")
    producer.begin_transaction()
    producer.produce("stray", b"in", partition=0)
    assert producer.flush(10) == 0
    with KafkaClient(txn_bootstrap) as client:
        d = tx.describe_transaction(client, "tx-stray")
        assert d.partitions == (TopicPartition("stray", 0),)
        pid, offset = _open_raw_transaction(client, TopicPartition("stray", 1), producer_id=d.producer_id,
                                            producer_epoch=d.producer_epoch)
    time.sleep(0.01)
    code, out, err = tcli("--find-hanging", "--topic", "stray", "--max-transaction-timeout", "0")
    assert code == 0, err
    assert [r[:6] for r in _table(out)[1:]] == [["stray", "1", str(pid), str(d.producer_epoch), "-1", str(offset)]]

    code, out, err = tcli("--abort", "--topic", "stray", "--partition", "1", "--start-offset", str(offset))
    assert (code, out) == (0, ""), err
    assert _table(tcli("--find-hanging", "--topic", "stray", "--max-transaction-timeout", "0")[1]) == \
        [HANGING_HEADER]
    producer.commit_transaction(10)  # the producer's own transaction is untouched, and commits

    def open_in_stray_0() -> list[tuple[str, str]]:
        code, out, err = tcli("--describe-producers", "--topic", "stray", "--partition", "0")
        assert code == 0, err
        return [(r[0], r[5]) for r in _table(out)[1:]]

    wait_until(lambda: open_in_stray_0() == [(str(pid), "None")], what=lambda: f"the marker: {open_in_stray_0()}",
               interval=0.05)


def test_abort_by_producer_id_and_the_leaders_refusals(tcli: Runner, txn_bootstrap: str,
                                                      request: pytest.FixtureRequest) -> None:
    on_kafka = request.node.callspec.params["txn_bootstrap"] == "kafka"
    _create_topic(txn_bootstrap, "fence", 1)
    tp = TopicPartition("fence", 0)
    with KafkaClient(txn_bootstrap) as client:
        pid, offset = _open_raw_transaction(client, tp, producer_epoch=3)

        def abort(epoch: int, coordinator_epoch: int) -> tuple[int, str, str]:
            return tcli("--abort", "--topic", "fence", "--partition", "0", "--producer-id", str(pid),
                        "--producer-epoch", str(epoch), "--coordinator-epoch", str(coordinator_epoch))

        code, out, err = abort(2, 0)  # older than the producer's epoch
        assert code == 1 and err.startswith("kbroker: error: INVALID_PRODUCER_EPOCH: WriteTxnMarkers request "
                                            f"with (topic-partition fence-0, producer id {pid}, producer epoch 2, "
                                            "coordinator epoch 0) failed"), err
        if not on_kafka:
            # kbroker's coordinator only ever has epoch 0: a marker claiming a newer one would fence it
            # out of the partition for good, so the leader refuses it.
            code, out, err = abort(3, 5)
            assert code == 1 and err.startswith("kbroker: error: INVALID_REQUEST: "), err
        coordinator_epoch = 5 if on_kafka else 0
        code, out, err = abort(3, coordinator_epoch)
        assert (code, out) == (0, ""), err
        assert tx.describe_partition_producers(client, tp)[0].coordinator_epoch == coordinator_epoch

        # A new transaction of that producer; a marker from an older coordinator epoch is fenced.
        _open_raw_transaction(client, tp, producer_epoch=3, producer_id=pid, base_sequence=2)
        if on_kafka:
            code, out, err = abort(3, 4)
            assert code == 1 and err.startswith("kbroker: error: TRANSACTION_COORDINATOR_FENCED: "), err
            # -1 (a producer no coordinator ever wrote a marker for) is sent as 0, as Kafka's tool does.
            code, out, err = abort(3, -1)
            assert code == 1 and err.startswith("kbroker: error: TRANSACTION_COORDINATOR_FENCED: "
                                                "WriteTxnMarkers request with (topic-partition fence-0, producer id "
                                                f"{pid}, producer epoch 3, coordinator epoch 0)"), err
        assert abort(3, coordinator_epoch)[0] == 0
        assert tx.describe_partition_producers(client, tp)[0].current_txn_start_offset is None
        assert _read_committed(client, tp) == ([], offset + 6)


def test_tables_match_kafkas_own_tool(capsys: pytest.CaptureFixture[str], txn_bootstrap: str) -> None:
    """Kafka's kafka-transactions.sh and ``kbroker transactions`` print the same tables, on either broker."""
    why = reference_unavailable()
    if why is not None:
        need(f"Kafka's tools: {why}")
    from tools.kafka_reference import run_tool

    bootstrap = txn_bootstrap
    _create_topic(bootstrap, "same", 2)
    producer = _transactional_producer(bootstrap, "tx-same")
    producer.begin_transaction()
    producer.produce("same", b"a", partition=0)
    assert producer.flush(10) == 0
    with KafkaClient(bootstrap) as client:
        _open_raw_transaction(client, TopicPartition("same", 1))
    time.sleep(0.01)

    def both(kafka_args: list[str], ours: list[str]) -> tuple[str, str]:
        theirs = run_tool("transactions", kafka_args, bootstrap=bootstrap)
        assert theirs.returncode == 0, theirs.stderr
        code, out, err = _run(capsys, *ours, "--bootstrap-server", bootstrap)
        assert code == 0, err
        return theirs.stdout, out

    theirs, ours = both(["describe-producers", "--topic", "same", "--partition", "1"],
                        ["--describe-producers", "--topic", "same", "--partition", "1"])
    assert ours == theirs
    theirs, ours = both(["find-hanging", "--topic", "same", "--max-transaction-timeout", "0"],
                        ["--find-hanging", "--topic", "same", "--max-transaction-timeout", "0"])
    assert ours == theirs and len(ours.splitlines()) == 2
    theirs, ours = both(["list"], ["--list"])
    # Kafka's tool lists in hash order; the tables hold the same lines.
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    theirs, ours = both(["describe", "--transactional-id", "tx-same"], ["--describe", "--transactional-id", "tx-same"])
    # The duration column moves with the clock: compare the others, and the widths.
    mask = [7]
    assert [[c for i, c in enumerate(line.split("\t")) if i not in mask] for line in ours.splitlines()] == \
        [[c for i, c in enumerate(line.split("\t")) if i not in mask] for line in theirs.splitlines()]
    producer.abort_transaction(10)
