"""Console pages for consumer groups, share groups, transactions and ACLs, against a real
broker fed by real clients: what the clients did shows, resetting offsets takes effect for the
next consumer and is refused (with Kafka's words) while the group has members, and the lag
stream samples only while it is watched."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from console_helpers import Served
from kafka import KafkaConsumer, KafkaProducer

from kbroker.console import groups as groups_mod
from kbroker.console.backend import ConsoleSettings
from kbroker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("console-groups") / "data") as b:
        yield b


@pytest.fixture(scope="module")
def console(broker: BrokerThread) -> Iterator[Served]:
    with Served(broker, ConsoleSettings()) as served:
        yield served


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i in range(count):
            producer.send(topic, value=f"m{i}".encode(), partition=partition)
        producer.flush(10)
    finally:
        producer.close()


def consume_and_commit(bootstrap: str, topic: str, group: str, count: int) -> list[int]:
    """Consume ``count`` records of partition 0 in ``group``, commit, leave; the offsets seen."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    try:
        consumer.subscribe([topic])
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(seen) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=count - len(seen)).values():
                seen += [r.offset for r in records]
        consumer.commit()
        return seen
    finally:
        consumer.close()


def create_topic(broker: BrokerThread, topic: str, partitions: int = 1) -> None:
    with broker.admin() as admin:
        admin.create_topic(topic, partitions)


def cell(html: str, row_attrs: str, cls: str) -> str:
    """The text of ``td.cls`` in the row with ``row_attrs``."""
    row = re.search(rf"<tr {re.escape(row_attrs)}>(.*?)</tr>", html, re.S)
    assert row, f"no row {row_attrs}"
    found = re.search(rf'class="{cls}[^"]*">([^<]*)<', row.group(1))
    assert found, f"no .{cls} in row {row_attrs}"
    return found.group(1).strip()


def test_group_list_and_detail_show_what_a_consumer_did(broker: BrokerThread, console: Served) -> None:
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 10)
    assert len(consume_and_commit(broker.bootstrap, topic, group, 4)) == 4
    with console.client() as http:
        page = http.get("/groups")
        assert page.status_code == 200
        assert f'<tr data-group="{group}">' in page.text
        assert cell(page.text, f'data-group="{group}"', "state") == "Empty"
        assert cell(page.text, f'data-group="{group}"', "protocol") == "consumer"
        assert cell(page.text, f'data-group="{group}"', "lag") == "6"
        filtered = http.get("/groups", params={"q": "no-such-group-xyz"})
        assert group not in filtered.text
        detail = http.get(f"/groups/{group}")
        assert detail.status_code == 200
        attrs = f'data-topic="{topic}" data-partition="0"'
        assert cell(detail.text, attrs, "committed") == "4"
        assert cell(detail.text, attrs, "end") == "10"
        assert cell(detail.text, attrs, "lag") == "6"
        assert re.search(r'id="total-lag"[^>]*>6<', detail.text)
        assert 'id="group-state">Empty<' in detail.text
        assert 'id="reset-offsets"' in detail.text and "hx-confirm" in detail.text
        assert http.get("/groups/no-such-group-xyz").status_code == 404


def test_members_and_assignment_of_a_live_group(broker: BrokerThread, console: Served) -> None:
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic, 2)
    produce(broker.bootstrap, topic, 3)
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, client_id="console-probe",
                             auto_offset_reset="earliest")
    try:
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        assert consumer.assignment()
        with console.client() as http:
            detail = http.get(f"/groups/{group}").text
            assert 'id="group-state">Stable<' in detail
            assert "console-probe" in detail
            assert f'<span class="tp">{topic}-0</span>' in detail and f'<span class="tp">{topic}-1</span>' in detail
            # Kafka's tool refuses to reset the offsets of a group with members; so does the console.
            refused = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "earliest"})
            assert refused.status_code == 400
            assert 'class="error"' in refused.text
            assert f"Assignments can only be reset if the group &#39;{group}&#39; is inactive, but the current " \
                   "state is Stable." in refused.text
            listed = http.get("/groups").text
            assert cell(listed, f'data-group="{group}"', "members") == "1"
    finally:
        consumer.close()


def test_reset_offsets_is_seen_by_the_next_consumer(broker: BrokerThread, console: Served) -> None:
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 8)
    consume_and_commit(broker.bootstrap, topic, group, 8)
    with console.client() as http:
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "offset", "value": "3"})
        assert done.status_code == 200 and 'id="reset-done"' in done.text, done.text
        # The fresh offsets table comes along (swapped out of band by htmx).
        assert '<table id="offsets" hx-swap-oob="true">' in done.text
        assert cell(done.text, f'data-topic="{topic}" data-partition="0"', "committed") == "3"
        detail = http.get(f"/groups/{group}").text
        assert cell(detail, f'data-topic="{topic}" data-partition="0"', "committed") == "3"
        # The next consumer of the group starts at the reset offset.
        assert consume_and_commit(broker.bootstrap, topic, group, 5)[0] == 3
        # An offset past the end is moved to the end, as Kafka's tool does; "all" is the committed topics.
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": "", "to": "offset", "value": "999"})
        assert "ok" in done.text
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "committed") == "8"
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "lag") == "8"
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "latest"})
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "lag") == "0"
        # A timestamp after every record: the end offset.
        future = str(int(time.time() * 1000) + 3_600_000)
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "timestamp", "value": future})
        assert 'id="reset-done"' in done.text
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "committed") == "8"
        done = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "timestamp", "value": "0"})
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "committed") == "0"


def test_reset_offsets_input_is_validated(broker: BrokerThread, console: Served) -> None:
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 2)
    consume_and_commit(broker.bootstrap, topic, group, 2)
    with console.client() as http:
        bad = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "sideways"})
        assert bad.status_code == 400 and "Unknown target sideways" in bad.text
        bad = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "offset", "value": "abc"})
        assert bad.status_code == 400 and "needs an integer" in bad.text
        bad = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "offset", "value": "-4"})
        assert bad.status_code == 400
        missing = http.post(f"/groups/{group}/reset-offsets", data={"topic": "no-such-topic-q", "to": "earliest"})
        assert "UNKNOWN_TOPIC_OR_PARTITION" in missing.text
        xss = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "<script>"})
        assert "<script>" not in xss.text and "&lt;script&gt;" in xss.text


def test_read_only_hides_and_refuses_the_reset(broker: BrokerThread) -> None:
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 2)
    consume_and_commit(broker.bootstrap, topic, group, 2)
    with Served(broker, ConsoleSettings(read_only=True)) as served, served.client() as http:
        page = http.get(f"/groups/{group}").text
        assert 'id="reset-offsets"' not in page
        refused = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert refused.status_code == 403
        assert cell(http.get(f"/groups/{group}").text, f'data-topic="{topic}" data-partition="0"', "committed") == "2"


def test_lag_stream_samples_only_while_watched(broker: BrokerThread, console: Served,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groups_mod, "SAMPLE_INTERVAL_S", 0.1)
    topic, group = _name("t"), _name("g")
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 5)
    consume_and_commit(broker.bootstrap, topic, group, 2)
    assert console.console is not None
    histories = groups_mod.histories(console.console)
    assert histories.get(group) is None  # nobody looked: no history, no sampler
    events: list[tuple[str, str]] = []
    with console.client() as http, http.stream("GET", f"/groups/{group}/lag/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        produced = False
        lines = stream.iter_lines()  # kept: a dropped line iterator closes the stream
        for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, line[6:]))
                if not produced and event == "lag":
                    threading.Thread(target=produce, args=(broker.bootstrap, topic, 4)).start()
                    produced = True
                if (event, line[6:]) == ("lag", "7"):
                    break
        assert histories.watched == 1
    lags = [int(d) for e, d in events if e == "lag"]
    assert lags[0] == 3 and lags[-1] == 7
    assert any(e == "history" and 'id="lag-history"' in d for e, d in events)
    deadline = time.monotonic() + 5
    while histories.watched and time.monotonic() < deadline:
        time.sleep(0.05)
    assert histories.watched == 0  # the viewer left: sampling stopped
    history = histories.get(group)
    assert history is not None and 1 <= len(history.points) <= groups_mod.HISTORY_POINTS
    count = len(history.points)
    time.sleep(0.3)
    assert len(history.points) == count
    # The page shows the history sampled while it was watched.
    with console.client() as http:
        page = http.get(f"/groups/{group}").text
        svg = re.search(r'<svg id="lag-history".*?</svg>', page, re.S)
        assert svg and 'data-peak="7"' in svg.group(0) and "total lag: 7" in svg.group(0)


def test_lag_histories_are_bounded() -> None:
    histories = groups_mod.LagHistories()
    for i in range(groups_mod.HISTORY_GROUPS + 10):
        h = histories.watch(f"g{i}")
        histories.leave(h)
    assert len(histories._groups) == groups_mod.HISTORY_GROUPS
    h = histories.watch("busy")
    for i in range(groups_mod.HISTORY_POINTS * 2):
        assert histories.sample(h, i, float(i))
    assert len(h.points) == groups_mod.HISTORY_POINTS
    assert not histories.sample(h, 1, float(groups_mod.HISTORY_POINTS * 2 - 1) + 0.01)  # within the interval


def test_transactions_acls_and_share_groups_pages(broker: BrokerThread, console: Served) -> None:
    from confluent_kafka import Producer

    topic, txn_id = _name("t"), _name("tx")
    create_topic(broker, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, b"v", partition=0)
    producer.flush(10)
    with console.client() as http:
        page = http.get("/transactions").text
        assert 'id="nav-transactions"' in page
        assert f'<tr data-transactional-id="{txn_id}">' in page
        assert cell(page, f'data-transactional-id="{txn_id}"', "state") == "Ongoing"
        assert f"{topic}-0" in page
        producer.commit_transaction(10)
        page = http.get("/transactions").text
        assert cell(page, f'data-transactional-id="{txn_id}"', "state") == "CompleteCommit"
        assert txn_id not in http.get("/transactions", params={"state": "Ongoing"}).text
        acls = http.get("/acls")
        assert acls.status_code == 200 and 'id="acls"' in acls.text
        assert "No authorizer is configured" in acls.text  # Kafka's SECURITY_DISABLED, told plainly
        share = http.get("/share-groups")
        assert share.status_code == 200 and 'id="share-groups"' in share.text and 'id="nav-share-groups"' in share.text
        assert http.get("/share-groups/none-such").status_code == 404


def test_a_kip848_consumer_group_shows_its_members(broker: BrokerThread, console: Served) -> None:
    from confluent_kafka import Consumer

    topic, group = _name("t"), _name("g")
    create_topic(broker, topic, 2)
    produce(broker.bootstrap, topic, 3)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "consumer",
                         "client.id": "kip848-probe", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert len(consumer.assignment()) == 2
        with console.client() as http:
            listed = http.get("/groups").text
            assert cell(listed, f'data-group="{group}"', "type") == "consumer"
            assert cell(listed, f'data-group="{group}"', "members") == "1"
            detail = http.get(f"/groups/{group}").text
            assert 'id="group-type">consumer<' in detail and "kip848-probe" in detail
            assert f'<span class="tp">{topic}-0</span>' in detail and f'<span class="tp">{topic}-1</span>' in detail
            refused = http.post(f"/groups/{group}/reset-offsets", data={"topic": topic, "to": "earliest"})
            assert refused.status_code == 400 and "is inactive, but the current state is" in refused.text
    finally:
        consumer.close()


def test_a_share_group_shows_with_its_members(broker: BrokerThread, console: Served) -> None:
    from confluent_kafka import ShareConsumer

    topic, group = _name("t"), _name("sg")
    create_topic(broker, topic)
    consumer = ShareConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": "share-probe"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            consumer.poll(0.2)
            members = broker.call(lambda: [m for g in broker.broker.share_groups.groups.values()
                                           if g.group_id == group for m in g.members.values() if m.assignment])
            if members:
                break
        with console.client() as http:
            listed = http.get("/share-groups").text
            assert cell(listed, f'data-group="{group}"', "members") == "1"
            assert group not in http.get("/groups").text  # consumer groups only there
            detail = http.get(f"/share-groups/{group}").text
            assert "share-probe" in detail and f'<span class="tp">{topic}-0</span>' in detail
            assert http.get(f"/groups/{group}", follow_redirects=False).headers["location"] == f"/share-groups/{group}"
            refused = http.post(f"/groups/{group}/reset-offsets", data={"to": "earliest"})
            assert refused.status_code == 400
    finally:
        consumer.close()


def test_group_ids_with_slashes_spaces_and_markup(broker: BrokerThread, console: Served) -> None:
    topic, group = _name("t"), f"team/a b <i>{uuid.uuid4().hex[:4]}"
    create_topic(broker, topic)
    produce(broker.bootstrap, topic, 3)
    consume_and_commit(broker.bootstrap, topic, group, 3)
    with console.client() as http:
        listed = http.get("/groups").text
        escaped = group.replace("<", "&lt;").replace(">", "&gt;")
        assert f'data-group="{escaped}"' in listed and "<i>" not in listed
        href = re.search(r'<a href="(/groups/team/a[^"]*)"', listed)
        assert href
        detail = http.get(href.group(1))
        assert detail.status_code == 200 and cell(detail.text, f'data-topic="{topic}" data-partition="0"', "lag") == "0"
        done = http.post(href.group(1) + "/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert done.status_code == 200, done.text
        assert cell(http.get(href.group(1)).text, f'data-topic="{topic}" data-partition="0"', "lag") == "3"


def test_groups_loading_is_told(broker: BrokerThread, console: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from kbroker.groups.errors import Errors, GroupError

    def loading() -> list[Any]:
        raise GroupError(Errors.COORDINATOR_LOAD_IN_PROGRESS)

    monkeypatch.setattr(broker.broker.groups, "list_groups", loading)
    with console.client() as http:
        page = http.get("/groups")
        assert page.status_code == 200 and 'id="groups-error">COORDINATOR_LOAD_IN_PROGRESS<' in page.text


def test_stopping_the_console_ends_open_lag_streams(broker: BrokerThread) -> None:
    served = Served(broker, ConsoleSettings()).__enter__()
    lines: list[str] = []
    opened = threading.Event()

    def watch() -> None:
        try:
            with httpx.Client(base_url=served.url, timeout=30) as http, \
                    http.stream("GET", "/groups/nobody/lag/stream") as stream:
                for line in stream.iter_lines():
                    lines.append(line)
                    opened.set()
        except httpx.HTTPError as e:
            lines.append(repr(e))

    viewer = threading.Thread(target=watch, daemon=True)
    viewer.start()
    assert opened.wait(10)
    assert served.console is not None
    histories = groups_mod.histories(served.console)
    assert histories.watched == 1
    started = time.monotonic()
    served.__exit__(None, None, None)
    assert time.monotonic() - started < 4  # not stuck behind a stream that never ends
    viewer.join(5)
    assert not viewer.is_alive()
    assert histories.watched == 0  # its sampler stopped with it
