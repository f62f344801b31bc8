"""The console in a real headless browser (chromium through chromium-driver, by Selenium),
against a real broker fed by real clients: what confluent-kafka and kafka-python did shows on
the pages, live values change without a reload, actions confirmed in the browser's dialog take
effect for the next client, read-only mode hides the actions and login guards the pages when
SASL is on. Each page visited is saved as a screenshot (see conftest.py).

One browser for the session and one broker per fixture: a test takes a few seconds.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Producer as CkProducer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

import kbroker

if TYPE_CHECKING:  # the fixtures are conftest's; importing it again would make a second copy
    from tests.console.conftest import ConsoleBroker

#: Seconds a live value (SSE) or an action's effect may take to show.
LIVE_S = 15.0

#: Brokers and real clients: the integration tier (tests/conftest.py cannot see it in the fixtures' names).
pytestmark = pytest.mark.integration


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_page(browser: Any, url: str, shot: Path | None = None) -> None:
    """Load ``url`` and wait for the document; save a screenshot at ``shot``."""
    browser.get(url)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
    if shot is not None:
        browser.save_screenshot(str(shot))


def wait_for(browser: Any, check: Callable[[Any], Any], what: str, timeout: float = LIVE_S) -> Any:
    """``check(browser)``'s first truthy value within ``timeout``. Meanwhile it may find no element
    or an element of the page being replaced (a form's answer loading)."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        return WebDriverWait(browser, timeout, ignored_exceptions=ignored).until(check)
    except TimeoutException:
        raise AssertionError(f"not seen within {timeout:.0f}s: {what}") from None


def css(browser: Any, selector: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, selector)


def all_css(browser: Any, selector: str) -> list[Any]:
    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def number(text: str) -> int:
    """The integer shown in ``text`` ("1,234" -> 1234); AssertionError when there is none."""
    digits = re.sub(r"[,\s\u202f]", "", text)
    m = re.search(r"-?\d+", digits)
    assert m, f"no number in {text!r}"
    return int(m.group())


def confirm(browser: Any) -> None:
    """Accept the confirmation dialog an action opens (htmx ``hx-confirm``)."""
    WebDriverWait(browser, 5).until(ec.alert_is_present())
    browser.switch_to.alert.accept()


def fill(form: Any, field: str, value: str) -> None:
    """Set a form field (input, textarea or select) by its name."""
    el = form.find_element(By.NAME, field)
    if el.tag_name == "select":
        from selenium.webdriver.support.ui import Select

        Select(el).select_by_value(value)
    else:
        el.clear()
        el.send_keys(value)
        assert el.get_attribute("value") == value, f"{field}: typed {value!r}, the field holds {el.get_attribute('value')!r}"


def submit(form: Any) -> None:
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])").click()


def topic_names(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=10).topics)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with confluent-kafka's AdminClient, as an application would."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    """Send ``records`` (KafkaProducer.send keyword arguments) with kafka-python, acks=all."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for r in records:
            producer.send(topic, **r).get(10)
    finally:
        producer.close()


# --- pages ---------------------------------------------------------------------------------

def test_overview_loads_and_throughput_goes_live(browser: Any, console: ConsoleBroker, screenshots: Path) -> None:
    topic = name("overview")
    create_topic(console.bootstrap, topic, 2)
    open_page(browser, console.url + "/")
    assert kbroker.__version__ in css(browser, "#broker-version").text
    assert css(browser, "#uptime").text.strip()
    assert number(css(browser, "#partition-count").text) >= 2
    assert css(browser, "#disk-use").text.strip()
    assert str(console.kafka.port) in css(browser, "#listeners").text
    rows = all_css(browser, "#brokers tr[data-broker-id]")
    assert [r.get_attribute("data-broker-id") for r in rows] == [str(console.kafka.broker.config.node_id)]
    # The page stays open: bytes produced now show in its throughput without a reload.
    producer = CkProducer({"bootstrap.servers": console.bootstrap, "linger.ms": 5})
    deadline = time.monotonic() + LIVE_S
    seen = ""
    while time.monotonic() < deadline:
        for _ in range(200):
            producer.produce(topic, b"x" * 1000)
        producer.flush(10)
        seen = css(browser, "#throughput-in").text
        if re.search(r"[1-9]", seen):
            break
        time.sleep(0.3)
    assert re.search(r"[1-9]", seen), f"#throughput-in stayed {seen!r} while 1 MB/s went in"
    browser.save_screenshot(str(screenshots / "overview.png"))


def test_topic_created_by_confluent_appears(browser: Any, console: ConsoleBroker, screenshots: Path) -> None:
    topic = name("orders")
    other = name("payments")
    create_topic(console.bootstrap, topic, 3)
    create_topic(console.bootstrap, other, 1)
    open_page(browser, console.url + "/topics", screenshots / "topics.png")
    row = css(browser, f'#topics tr[data-topic="{topic}"]')
    assert "3" in row.text and "delete" in row.text  # partitions and cleanup.policy
    assert all_css(browser, f'#topics tr[data-topic="{other}"]')
    # The filter (GET q) keeps only the matching topics.
    open_page(browser, console.url + "/topics?" + urllib.parse.urlencode({"q": topic}))
    assert [r.get_attribute("data-topic") for r in all_css(browser, "#topics tr[data-topic]")] == [topic]
    assert css(browser, "input#topic-filter").get_attribute("value") == topic

    open_page(browser, f"{console.url}/topics/{topic}", screenshots / "topic.png")
    partitions = all_css(browser, "#partitions tr[data-partition]")
    assert sorted(int(p.get_attribute("data-partition")) for p in partitions) == [0, 1, 2]
    leader = css(browser, '#partitions tr[data-partition="0"] .leader').text
    assert number(leader) == console.kafka.broker.config.node_id
    assert css(browser, '#configs tr[data-config="cleanup.policy"] .value').text.strip() == "delete"
    assert css(browser, "#rate").tag_name.lower() in ("svg", "div", "figure", "span")


def test_messages_from_kafka_python_show_with_headers(browser: Any, console: ConsoleBroker,
                                                     screenshots: Path) -> None:
    topic = name("events")
    create_topic(console.bootstrap, topic, 1)
    produce(console.bootstrap, topic, [
        {"key": b"order-1", "value": json.dumps({"id": 1, "items": ["a", "b"]}).encode(), "partition": 0,
         "headers": [("trace-id", b"abc123"), ("source", b"web")]},
        {"key": b"order-2", "value": b"plain text value", "partition": 0},
        {"key": None, "value": bytes([0, 1, 0xFE, 0xFF]), "partition": 0},
    ])
    open_page(browser, f"{console.url}/topics/{topic}/messages?partition=0&offset=0", screenshots / "messages.png")
    rows = all_css(browser, '.message[data-partition="0"]')
    assert [r.get_attribute("data-offset") for r in rows] == ["0", "1", "2"]
    first, second, third = rows
    assert first.find_element(By.CSS_SELECTOR, ".key").text == "order-1"
    value = first.find_element(By.CSS_SELECTOR, ".value")
    assert value.get_attribute("data-format") == "json"
    assert json.loads(value.text) == {"id": 1, "items": ["a", "b"]}
    assert "\n" in value.text  # pretty-printed
    headers = [h.text.strip() for h in first.find_elements(By.CSS_SELECTOR, ".headers .header")]
    assert headers == ["trace-id: abc123", "source: web"]
    assert first.find_element(By.CSS_SELECTOR, ".timestamp").text.strip()
    assert second.find_element(By.CSS_SELECTOR, ".value").get_attribute("data-format") == "text"
    assert second.find_element(By.CSS_SELECTOR, ".value").text == "plain text value"
    assert second.find_elements(By.CSS_SELECTOR, ".headers .header") == []
    binary = third.find_element(By.CSS_SELECTOR, ".value")
    assert binary.get_attribute("data-format") == "hex"
    assert "0001feff" in re.sub(r"\s", "", binary.text).lower()

    # Search in the window, then follow: a message produced now is appended without a reload.
    open_page(browser, f"{console.url}/topics/{topic}/messages?partition=0&offset=0&q=plain")
    assert [r.get_attribute("data-offset") for r in all_css(browser, ".message")] == ["1"]
    open_page(browser, f"{console.url}/topics/{topic}/messages?partition=0&offset=0&follow=1")
    produce(console.bootstrap, topic, [{"key": b"late", "value": b"followed", "partition": 0}])
    late = wait_for(browser, lambda d: css(d, '.message[data-partition="0"][data-offset="3"]'),
                    "the message produced while following")
    assert late.find_element(By.CSS_SELECTOR, ".value").text == "followed"


def test_group_lag_goes_to_zero_then_reset_from_the_ui_is_seen_by_the_next_consumer(
        browser: Any, console: ConsoleBroker, screenshots: Path) -> None:
    topic, group = name("lag"), name("billing")
    create_topic(console.bootstrap, topic, 2)
    produce(console.bootstrap, topic, [{"value": f"m{i}".encode(), "partition": i % 2} for i in range(20)])
    consumer = KafkaConsumer(topic, bootstrap_servers=console.bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        deadline = time.monotonic() + LIVE_S
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(200, max_records=1)
        assert consumer.assignment(), "the consumer got no assignment"
        # Part-way: committed 3 of partition 0's 10 and 4 of partition 1's: a lag of 13.
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1),
                         TopicPartition(topic, 1): OffsetAndMetadata(4, "", -1)})

        open_page(browser, console.url + "/groups", screenshots / "groups.png")
        row = css(browser, f'#groups tr[data-group="{group}"]')
        assert row.find_element(By.CSS_SELECTOR, ".state").text.strip() == "Stable"
        assert row.find_element(By.CSS_SELECTOR, ".protocol").text.strip() == "consumer"
        assert number(row.find_element(By.CSS_SELECTOR, ".members").text) == 1
        assert number(row.find_element(By.CSS_SELECTOR, ".lag").text) == 13

        open_page(browser, f"{console.url}/groups/{group}")
        assert css(browser, "#group-state").text.strip() == "Stable"
        assert len(all_css(browser, "#members tr")) >= 1 and consumer.config["client_id"] in css(browser, "#members").text
        p0 = css(browser, f'#offsets tr[data-topic="{topic}"][data-partition="0"]')
        assert (number(p0.find_element(By.CSS_SELECTOR, ".committed").text),
                number(p0.find_element(By.CSS_SELECTOR, ".end").text),
                number(p0.find_element(By.CSS_SELECTOR, ".lag").text)) == (3, 10, 7)
        assert number(css(browser, "#total-lag").text) == 13

        # Reset while the group has a member: refused with Kafka's error, the offsets unchanged.
        form = css(browser, "#reset-offsets")
        fill(form, "to", "earliest")
        submit(form)
        confirm(browser)
        shown = wait_for(browser, lambda d: css(d, "#reset-result").text.strip(), "the reset's outcome")
        assert re.search(r"(?i)unknown.member|illegal.generation|not empty|non-empty|has members|inactive|stable",
                         shown), shown
        browser.save_screenshot(str(screenshots / "group-reset-refused.png"))
        open_page(browser, f"{console.url}/groups/{group}")
        assert number(css(browser, "#total-lag").text) == 13

        # The consumer reads everything and commits: the open page's lag goes to 0 live.
        open_page(browser, f"{console.url}/groups/{group}")
        got = 0
        deadline = time.monotonic() + LIVE_S
        consumer.seek(TopicPartition(topic, 0), 3)
        consumer.seek(TopicPartition(topic, 1), 4)
        while got < 13 and time.monotonic() < deadline:
            got += sum(len(v) for v in consumer.poll(500).values())
        assert got == 13
        consumer.commit()
        wait_for(browser, lambda d: number(css(d, "#total-lag").text) == 0, "#total-lag at 0 without a reload")
        open_page(browser, f"{console.url}/groups/{group}", screenshots / "group.png")
        assert [number(e.text) for e in all_css(browser, "#offsets tr[data-partition] .lag")] == [0, 0]
    finally:
        consumer.close()

    # Empty now: the reset to earliest from the UI is what the next consumer of the group starts from.
    open_page(browser, f"{console.url}/groups/{group}")
    wait_for(browser, lambda d: css(d, "#group-state").text.strip() == "Empty", "the group Empty after close")
    form = css(browser, "#reset-offsets")
    fill(form, "to", "earliest")
    submit(form)
    confirm(browser)
    wait_for(browser, lambda d: css(d, "#reset-result").text.strip(), "the reset's outcome")
    open_page(browser, f"{console.url}/groups/{group}")
    wait_for(browser, lambda d: number(css(d, "#total-lag").text) == 20, "the lag back at 20 after the reset")
    nxt = KafkaConsumer(topic, bootstrap_servers=console.bootstrap, group_id=group, enable_auto_commit=False,
                        auto_offset_reset="latest", consumer_timeout_ms=5_000)
    try:
        values = sorted(m.value for m in nxt)
    finally:
        nxt.close()
    assert values == sorted(f"m{i}".encode() for i in range(20))


# --- actions -------------------------------------------------------------------------------

def test_create_topic_and_produce_from_the_ui(browser: Any, console: ConsoleBroker, screenshots: Path) -> None:
    topic = name("made-in-ui")
    open_page(browser, console.url + "/topics")
    form = css(browser, "#create-topic")
    fill(form, "name", topic)
    fill(form, "partitions", "2")
    fill(form, "replication_factor", "1")
    fill(form, "configs", "retention.ms=3600000\ncleanup.policy=compact")
    submit(form)
    confirm(browser)
    wait_for(browser, lambda d: topic in topic_names(console.bootstrap), "the topic created from the UI")
    admin = AdminClient({"bootstrap.servers": console.bootstrap})
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["cleanup.policy"].value == "compact" and configs["retention.ms"].value == "3600000"

    # The same name again: Kafka's error is shown.
    open_page(browser, console.url + "/topics")
    form = css(browser, "#create-topic")
    fill(form, "name", topic)
    fill(form, "partitions", "1")
    submit(form)
    confirm(browser)
    wait_for(browser, lambda d: "already exists" in d.find_element(By.TAG_NAME, "main").text,
             "TOPIC_ALREADY_EXISTS's message")

    # A test message produced from the topic's page reaches a consumer, headers and all.
    open_page(browser, f"{console.url}/topics/{topic}")
    form = css(browser, "#produce")
    fill(form, "partition", "1")
    fill(form, "key", "k-ui")
    fill(form, "value", "hello from the console")
    fill(form, "headers", "origin=console")
    submit(form)
    confirm(browser)
    consumer = KafkaConsumer(bootstrap_servers=console.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=LIVE_S * 1000)
    try:
        consumer.assign([TopicPartition(topic, 1)])
        msg = next(iter(consumer))
    finally:
        consumer.close()
    assert (msg.key, msg.value, list(msg.headers)) == (b"k-ui", b"hello from the console", [("origin", b"console")])


def test_admin_pages_are_linked_and_render(browser: Any, console: ConsoleBroker, screenshots: Path) -> None:
    txn_id = name("txn")
    topic = name("txn-topic")
    create_topic(console.bootstrap, topic, 1)
    producer = CkProducer({"bootstrap.servers": console.bootstrap, "transactional.id": txn_id})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, b"in a transaction")
    producer.commit_transaction(10)
    for link, table, shot in (("#nav-transactions", "#transactions", "transactions.png"),
                              ("#nav-acls", "#acls", "acls.png"),
                              ("#nav-share-groups", "#share-groups", "share-groups.png")):
        open_page(browser, console.url + "/")
        css(browser, link).click()
        wait_for(browser, lambda d, t=table: css(d, t), f"{table} after clicking {link}", timeout=10)
        browser.save_screenshot(str(screenshots / shot))
        if table == "#transactions":
            assert txn_id in css(browser, table).text


# --- read-only and login -------------------------------------------------------------------

def action_url(element: Any, base: str) -> tuple[str, str]:
    """(method, absolute URL) a form or button posts to (htmx attributes or plain HTML)."""
    for method in ("post", "delete", "put", "patch"):
        target = element.get_attribute(f"hx-{method}")
        if target:
            return method.upper(), urllib.parse.urljoin(base, target)
    return (element.get_attribute("method") or "post").upper(), element.get_attribute("action")


def test_read_only_hides_every_action_and_refuses_them(browser: Any, console: ConsoleBroker,
                                                       read_only: ConsoleBroker, screenshots: Path) -> None:
    topic, group = name("ro"), name("ro-group")
    for cb in (console, read_only):
        create_topic(cb.bootstrap, topic, 1)
        consumer = KafkaConsumer(bootstrap_servers=cb.bootstrap, group_id=group, enable_auto_commit=False)
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)})
        consumer.close()
    actions = {"/topics": ["#create-topic"], f"/topics/{topic}": ["#alter-config", "#delete-topic", "#produce"],
               f"/groups/{group}": ["#reset-offsets"]}
    # Where the writable console's actions go...
    targets = []
    for path, ids in actions.items():
        open_page(browser, console.url + path)
        targets += [action_url(css(browser, i), browser.current_url) for i in ids]
    # ...the read-only console shows none of them, and refuses them with 403.
    for path, ids in actions.items():
        open_page(browser, read_only.url + path)
        assert css(browser, "#read-only")
        for i in ids:
            assert all_css(browser, i) == [], f"{i} shown on {path} in read-only mode"
    browser.save_screenshot(str(screenshots / "read-only-group.png"))
    for method, url in targets:
        ro_url = url.replace(console.url, read_only.url)
        req = urllib.request.Request(ro_url, data=b"name=x&partitions=1&to=earliest", method=method,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 403, f"{method} {ro_url}: {err.value.code}"
    assert topic in topic_names(read_only.bootstrap)


def test_login_with_the_brokers_sasl_users(browser: Any, secured: ConsoleBroker, screenshots: Path) -> None:
    browser.delete_all_cookies()
    open_page(browser, secured.url + "/topics")
    wait_for(browser, lambda d: "/login" in d.current_url and css(d, "form#login"), "the login form")
    assert all_css(browser, "#topics") == []
    browser.save_screenshot(str(screenshots / "login.png"))

    form = css(browser, "form#login")
    fill(form, "username", "alice")
    fill(form, "password", "wrong")
    submit(form)
    wait_for(browser, lambda d: css(d, "form#login") and re.search(r"(?i)invalid|failed|wrong|incorrect",
                                                                    d.find_element(By.TAG_NAME, "main").text),
             "a failed login's message")
    assert not any(c["value"] for c in browser.get_cookies() if "session" in c["name"].lower())

    open_page(browser, secured.url + "/login?next=/topics")
    form = css(browser, "form#login")
    fill(form, "username", "alice")
    fill(form, "password", "alice-secret")
    submit(form)
    wait_for(browser, lambda d: all_css(d, "#broker-version") or all_css(d, "#topics"), "a page after login")
    assert "User:alice" in browser.find_element(By.TAG_NAME, "header").text
    open_page(browser, secured.url + "/logout")
    open_page(browser, secured.url + "/")
    wait_for(browser, lambda d: css(d, "form#login"), "the login form after logout")
    browser.delete_all_cookies()

