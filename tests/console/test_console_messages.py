"""The message browser shows what real producers wrote: keys, values and headers as text,
JSON or hex, by partition, offset, timestamp or the newest N, searched, bounded, and followed live."""

from __future__ import annotations

import html as html_lib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from kbroker.console.messages import MAX_MESSAGES, MAX_SHOWN, show
from kbroker.testing import BrokerThread


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(overrides={"console.port": "0", "transaction.state.log.num.partitions": "1",
                                 "offsets.topic.num.partitions": "1"}) as b:
        yield b


def url(b: BrokerThread, path: str) -> str:
    return f"http://127.0.0.1:{b.broker.console.port}{path}"


def create(b: BrokerThread, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(10)


@dataclass
class Row:
    partition: int
    offset: int
    key: str
    key_format: str
    value: str
    value_format: str
    headers: list[str]
    timestamp: int
    timestamp_type: str


def text(fragment: str) -> str:
    return html_lib.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def rows(page: str) -> list[Row]:
    out = []
    for m in re.finditer(r'<tr class="message" data-partition="(\d+)" data-offset="(\d+)">(.*?)</tr>', page, re.S):
        body = m.group(3)
        key = re.search(r'<td class="key" data-format="(\w+)">(.*?)</td>', body, re.S)
        value = re.search(r'<td class="value" data-format="(\w+)">(.*?)</td>', body, re.S)
        ts = re.search(r'data-timestamp="(\d+)" data-timestamp-type="(\w+)"', body)
        headers = [text(h) for h in re.findall(r'<div class="header"[^>]*>(.*?)</div>', body, re.S)]
        out.append(Row(int(m.group(1)), int(m.group(2)), text(key.group(2)), key.group(1), text(value.group(2)),
                       value.group(1), headers, int(ts.group(1)), ts.group(2)))
    return out


def browse(b: BrokerThread, topic: str, **params: object) -> list[Row]:
    r = httpx.get(url(b, f"/topics/{topic}/messages"), params={k: str(v) for k, v in params.items()})
    assert r.status_code == 200, r.text
    return rows(r.text)


def test_messages_from_kafka_python_show_with_their_headers_and_formats(broker: BrokerThread) -> None:
    create(broker, "msg-formats")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip", linger_ms=5)
    producer.send("msg-formats", key=b"order-1", value=json.dumps({"qty": 2, "item": "tea"}).encode(),
                  headers=[("source", b"web"), ("trace", b"t-1")], timestamp_ms=1_700_000_000_000)
    producer.send("msg-formats", key=None, value=b"\x00\x01\xfe\xff", headers=[("bin", b"\x00\xff")],
                  timestamp_ms=1_700_000_001_000)
    producer.send("msg-formats", key=b"k", value="<b>café</b>".encode(), timestamp_ms=1_700_000_002_000)
    producer.send("msg-formats", key=b"nothing", value=None, timestamp_ms=1_700_000_003_000)
    producer.flush(10)
    producer.close()
    got = browse(broker, "msg-formats")
    assert [r.offset for r in got] == [0, 1, 2, 3]
    first, binary, markup, tombstone = got
    assert (first.key, first.key_format, first.value_format) == ("order-1", "text", "json")
    assert json.loads(first.value) == {"qty": 2, "item": "tea"} and "\n" in first.value  # pretty-printed
    assert first.headers == ["source: web", "trace: t-1"]
    assert (first.timestamp, first.timestamp_type) == (1_700_000_000_000, "CreateTime")
    assert (binary.key_format, binary.value, binary.value_format) == ("null", "00 01 fe ff", "hex")
    assert binary.headers == ["bin: 00 ff"]
    assert markup.value == "<b>café</b>" and markup.value_format == "text"
    page = httpx.get(url(broker, "/topics/msg-formats/messages")).text
    assert "<b>café</b>" not in page  # escaped, shown as text
    assert tombstone.value_format == "null"
    assert 'id="follow"' in page


def test_positions_partition_and_newest(broker: BrokerThread) -> None:
    create(broker, "msg-pos", 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    base = 1_710_000_000_000
    for i in range(20):
        producer.send("msg-pos", key=b"k%d" % i, value=b"v%d" % i, partition=i % 2, timestamp_ms=base + i * 1000)
    producer.flush(10)
    producer.close()
    assert [(r.partition, r.offset) for r in browse(broker, "msg-pos", partition=1, offset=7)] == [(1, o) for o in
                                                                                                   range(7, 10)]
    newest = browse(broker, "msg-pos", newest=3)
    assert [r.value for r in newest] == ["v17", "v18", "v19"]
    assert [r.value for r in browse(broker, "msg-pos", partition=0, newest=2)] == ["v16", "v18"]
    from_time = browse(broker, "msg-pos", timestamp=base + 15_500)
    assert [r.value for r in from_time] == ["v16", "v17", "v18", "v19"]
    assert browse(broker, "msg-pos", timestamp=base + 10**9) == []
    assert browse(broker, "msg-pos", partition=0, offset=500) == []
    assert len(browse(broker, "msg-pos", offset=0)) == 20


def test_search_within_the_window(broker: BrokerThread) -> None:
    create(broker, "msg-search")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    producer.send("msg-search", key=b"alpha", value=b"first")
    producer.send("msg-search", key=b"beta", value=b"second", headers=[("origin", b"Needle-Service")])
    producer.send("msg-search", key=b"gamma", value=b"has a NEEDLE inside")
    producer.flush(10)
    producer.close()
    assert [r.key for r in browse(broker, "msg-search", q="needle", offset=0)] == ["beta", "gamma"]
    assert [r.key for r in browse(broker, "msg-search", q="alpha")] == ["alpha"]
    assert browse(broker, "msg-search", q="absent") == []


def test_a_window_is_bounded(broker: BrokerThread) -> None:
    create(broker, "msg-many")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=65536)
    for i in range(MAX_MESSAGES + 100):
        producer.send("msg-many", value=b"%d" % i)
    producer.send("msg-many", value=b"x" * (MAX_SHOWN + 5000))
    producer.flush(10)
    producer.close()
    window = browse(broker, "msg-many", offset=0)
    assert len(window) == MAX_MESSAGES and window[0].offset == 0 and window[-1].offset == MAX_MESSAGES - 1
    big = browse(broker, "msg-many", newest=1)[0]
    assert big.value.endswith(f"… ({MAX_SHOWN + 5000} bytes in all)") and len(big.value) < MAX_SHOWN + 100


def test_transaction_markers_are_not_messages(broker: BrokerThread) -> None:
    create(broker, "msg-txn")
    producer = CKProducer({"bootstrap.servers": broker.bootstrap, "transactional.id": "console-txn"})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce("msg-txn", b"committed-1")
    producer.produce("msg-txn", b"committed-2")
    producer.commit_transaction(10)
    producer.begin_transaction()
    producer.produce("msg-txn", b"after")
    producer.commit_transaction(10)
    got = browse(broker, "msg-txn", offset=0)
    # Offsets 2 and 5 hold the commit markers.
    assert [(r.offset, r.value) for r in got] == [(0, "committed-1"), (1, "committed-2"), (3, "after")]


def test_bad_parameters_are_clear_400s(broker: BrokerThread) -> None:
    create(broker, "msg-bad", 2)
    for params, message in (({"offset": "ten"}, "offset must be an integer"),
                            ({"partition": "2"}, "partition 2 does not exist"),
                            ({"partition": "-1"}, "partition must be at least 0"),
                            ({"newest": "0"}, "newest must be at least 1"),
                            ({"newest": str(MAX_MESSAGES + 1)}, f"newest must be at most {MAX_MESSAGES}"),
                            ({"offset": "1", "newest": "2"}, "give one of offset, timestamp and newest"),
                            ({"timestamp": "yesterday"}, "timestamp must be an integer")):
        r = httpx.get(url(broker, "/topics/msg-bad/messages"), params=params)
        assert r.status_code == 400 and message in r.text, params
    assert httpx.get(url(broker, "/topics/msg-none/messages")).status_code == 404
    for query in ("", "from=x", "from=0:a", "from=5:0"):
        assert httpx.get(url(broker, f"/live/topics/msg-bad/messages?{query}")).status_code == 400, query


def test_follow_appends_new_messages_live(broker: BrokerThread) -> None:
    create(broker, "msg-follow", 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    producer.send("msg-follow", value=b"old", partition=0).get(10)
    page = httpx.get(url(broker, "/topics/msg-follow/messages"), params={"follow": "1"}).text
    m = re.search(r'sse-connect="([^"]+)"', page)
    assert m and 'sse-swap="message"' in page and 'hx-swap="beforeend"' in page
    stream_url = html_lib.unescape(m.group(1))
    assert "from=0%3A1%2C1%3A0" in stream_url or "from=0:1,1:0" in stream_url
    seen: list[Row] = []
    with httpx.Client(timeout=10) as http, http.stream("GET", url(broker, stream_url)) as stream:
        producer.send("msg-follow", key=b"n1", value=b"new-1", partition=1, headers=[("h", b"1")]).get(10)
        producer.send("msg-follow", key=b"n2", value=b"new-2", partition=0).get(10)
        deadline = time.monotonic() + 10
        data: list[str] = []
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, "no new rows streamed"
            if line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                seen += rows("\n".join(data))
                data = []
                if len(seen) >= 2:
                    break
    producer.close()
    assert sorted((r.partition, r.offset, r.value) for r in seen) == [(0, 1, "new-2"), (1, 0, "new-1")]
    assert [r.headers for r in seen if r.partition == 1] == [["h: 1"]]


def test_show() -> None:
    assert (show(None).format, show(b"").format, show(b"[1,2]").format) == ("null", "text", "json")
    assert show(b"{not json").format == "text"
    assert show(b"\x1b[0m").format == "hex"  # control characters are not text
    assert show(b"\xc3\x28").text == "c3 28"
