"""The console's login when a listener uses SASL: passwords checked by the broker's own SASL
users (PLAIN JAAS users, SCRAM credentials), a signed session cookie, and pages and actions
authorised as the logged-in principal with the broker's ACLs."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from console_helpers import Served
from kafka import KafkaConsumer, KafkaProducer

from kbroker.console import auth
from kbroker.console.backend import ConsoleSettings
from kbroker.security.acl import AclBinding
from kbroker.security.model import AclOperation, AclPermissionType, PatternType, ResourceType
from kbroker.security.scram import ScramCredential
from kbroker.testing import BrokerThread

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
              'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
LISTENER = "listener.name.sasl_plaintext."
OVERRIDES = {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
             LISTENER + "plain.sasl.jaas.config": PLAIN_JAAS,
             "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
             "super.users": "User:admin"}
ADMIN = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_plain_username": "admin",
         "sasl_plain_password": "admin-secret"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    with BrokerThread(tmp_path_factory.mktemp("console-auth") / "data", OVERRIDES) as b:
        def add_scram_user() -> None:
            b.broker.credentials.upsert("carol", "SCRAM-SHA-256",
                                        ScramCredential.from_password("SCRAM-SHA-256", "carol-secret", 4096))
        b.call(add_scram_user)
        yield b


@pytest.fixture(scope="module")
def console(broker: BrokerThread) -> Iterator[Served]:
    with Served(broker, ConsoleSettings(login_required=True)) as served:
        yield served


@contextlib.contextmanager
def login(served: Served, user: str, password: str) -> Iterator[httpx.Client]:
    with served.client() as http:
        response = http.post("/login", data={"username": user, "password": password, "next": "/groups"})
        assert response.status_code == 303 and response.headers["location"] == "/groups", response.text
        assert auth.COOKIE in response.cookies
        yield http


def grant(broker: BrokerThread, *bindings: AclBinding) -> None:
    async def create() -> None:
        assert all(error is None for error in await broker.broker.authorizer.create_acls(list(bindings)))
    broker.call(create)


def acl(resource_type: ResourceType, name: str, principal: str, operation: AclOperation) -> AclBinding:
    return AclBinding(resource_type, name, PatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW)


def commit_group(broker: BrokerThread, topic: str, group: str, produced: int, committed: int) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, **ADMIN)
    for _i in range(produced):
        producer.send(topic, value=b"x", partition=0)
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False, **ADMIN)
    from kafka.structs import OffsetAndMetadata, TopicPartition
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(committed, None, -1)})
    consumer.close()


def test_pages_need_a_login(console: Served) -> None:
    with console.client() as http:
        page = http.get("/groups?q=a")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fgroups%3Fq%3Da"
        assert http.get("/groups", headers={"HX-Request": "true"}).status_code == 401
        assert http.get("/groups/x/lag/stream", headers={"Accept": "text/event-stream"}).status_code == 401
        assert http.post("/groups/x/reset-offsets", data={"to": "earliest"}).status_code == 401
        form = http.get("/login")
        assert form.status_code == 200 and 'id="login"' in form.text and 'name="password"' in form.text
        assert http.get("/static/console.css").status_code == 200


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("nobody", "alice-secret"), ("alice", ""),
                                           ("carol", "alice-secret"), ("", "")])
def test_a_wrong_password_is_refused(console: Served, user: str, password: str) -> None:
    with console.client() as http:
        refused = http.post("/login", data={"username": user, "password": password})
        assert refused.status_code == 401 and "Invalid username or password" in refused.text
        assert auth.COOKIE not in refused.cookies
        assert http.get("/groups").status_code == 303


def test_plain_and_scram_users_log_in(console: Served) -> None:
    with login(console, "alice", "alice-secret") as http:
        page = http.get("/groups")
        assert page.status_code == 200 and "User:alice" in page.text
        out = http.get("/logout")
        assert out.status_code == 303
        assert http.get("/groups").status_code == 303
    with login(console, "carol", "carol-secret") as http:  # a SCRAM credential of the broker's store
        assert "User:carol" in http.get("/groups").text


def test_a_forged_or_expired_cookie_is_refused(console: Served) -> None:
    sessions = auth.Sessions(b"k" * 32)
    cookie = sessions.issue("alice", now=1000.0)
    assert sessions.user(cookie, now=1001.0) == "alice"
    assert sessions.user(cookie, now=1000.0 + auth.SESSION_S + 1) is None
    encoded, expiry, mac = cookie.split(".")
    forged = f"{auth.base64.urlsafe_b64encode(b'admin').decode()}.{expiry}.{mac}"
    assert sessions.user(forged, now=1001.0) is None
    assert auth.Sessions(b"o" * 32).user(cookie, now=1001.0) is None  # another process's key
    assert sessions.user("garbage", now=1001.0) is None
    with console.client() as http:
        http.cookies.set(auth.COOKIE, forged)
        assert http.get("/groups").status_code == 303


def test_login_redirects_only_inside_the_console(console: Served) -> None:
    with console.client() as http:
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil"):
            done = http.post("/login", data={"username": "alice", "password": "alice-secret", "next": target})
            assert done.status_code == 303 and done.headers["location"] == "/"


def test_pages_and_actions_are_authorised_as_the_user(broker: BrokerThread, console: Served) -> None:
    topic, seen, hidden = f"t-{uuid.uuid4().hex[:6]}", f"seen-{uuid.uuid4().hex[:6]}", f"hidden-{uuid.uuid4().hex[:6]}"
    from kafka.admin import KafkaAdminClient, NewTopic
    admin_client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, **ADMIN)
    admin_client.create_topics([NewTopic(topic, 1, 1)])
    admin_client.close()
    commit_group(broker, topic, seen, 6, 2)
    commit_group(broker, topic, hidden, 0, 1)
    grant(broker, acl(ResourceType.GROUP, seen, "User:alice", AclOperation.DESCRIBE),
          acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE))
    with login(console, "alice", "alice-secret") as http:
        listed = http.get("/groups").text
        assert f'data-group="{seen}"' in listed and hidden not in listed
        assert http.get(f"/groups/{hidden}").status_code == 403
        assert http.get(f"/groups/{hidden}/lag/stream").status_code == 403
        hidden_reset = http.post(f"/groups/{hidden}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert hidden_reset.status_code == 403 and "GROUP_AUTHORIZATION_FAILED" in hidden_reset.text
        detail = http.get(f"/groups/{seen}").text
        assert f'data-topic="{topic}" data-partition="0"' in detail
        # OffsetCommit needs READ on the group: Kafka's error comes back.
        refused = http.post(f"/groups/{seen}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert "GROUP_AUTHORIZATION_FAILED" in refused.text, refused.text
        grant(broker, acl(ResourceType.GROUP, seen, "User:alice", AclOperation.READ))
        refused = http.post(f"/groups/{seen}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert "TOPIC_AUTHORIZATION_FAILED" in refused.text, refused.text
        grant(broker, acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ))
        done = http.post(f"/groups/{seen}/reset-offsets", data={"topic": topic, "to": "earliest"})
        assert 'id="reset-done"' in done.text, done.text
        # DescribeAcls needs DESCRIBE on the cluster.
        acls = http.get("/acls").text
        assert "CLUSTER_AUTHORIZATION_FAILED" in acls
    with login(console, "admin", "admin-secret") as http:
        assert re.search(rf'<tr data-principal="User:alice" data-resource="GROUP:{seen}">', http.get("/acls").text)
        assert f'data-group="{hidden}"' in http.get("/groups").text
        detail = http.get(f"/groups/{seen}").text
        assert re.search(r'class="committed num">0<', detail)


def test_a_broker_with_a_sasl_listener_serves_its_console_behind_the_login(tmp_path: Any) -> None:
    name = f"made-{uuid.uuid4().hex[:6]}"
    with BrokerThread(tmp_path / "data", {**OVERRIDES, "console.port": "0"}) as b:
        base = f"http://127.0.0.1:{b.broker.console.port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/topics").status_code == 303
            assert http.post("/login", data={"username": "alice", "password": "alice-secret"}).status_code == 303
            # Creating a topic needs CREATE on the cluster: alice has no ACL, Kafka's error comes back.
            refused = http.post("/topics", data={"name": name, "partitions": "1"})
            assert refused.status_code >= 400 and "AUTHORIZATION_FAILED" in refused.text, refused.text
            http.get("/logout")
            assert http.post("/login", data={"username": "admin", "password": "admin-secret"}).status_code == 303
            made = http.post("/topics", data={"name": name, "partitions": "1"})
            assert made.status_code == 200, made.text
            assert f'data-topic="{name}"' in http.get("/topics").text


def test_a_failed_login_waits_like_a_failed_sasl_login(console: Served) -> None:
    with console.client() as http:
        started = time.monotonic()
        assert http.post("/login", data={"username": "alice", "password": "nope"}).status_code == 401
        assert time.monotonic() - started >= 0.1  # connection.failed.authentication.delay.ms (100 by default)


def test_transactions_show_only_to_whom_may_describe_them(broker: BrokerThread, console: Served) -> None:
    from confluent_kafka import Producer

    txn_id = f"tx-{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id,
                         "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                         "sasl.username": "admin", "sasl.password": "admin-secret"})
    producer.init_transactions(10)
    with login(console, "alice", "alice-secret") as http:
        assert txn_id not in http.get("/transactions").text
        grant(broker, acl(ResourceType.TRANSACTIONAL_ID, txn_id, "User:alice", AclOperation.DESCRIBE))
        assert f'data-transactional-id="{txn_id}"' in http.get("/transactions").text
    with login(console, "admin", "admin-secret") as http:
        assert f'data-transactional-id="{txn_id}"' in http.get("/transactions").text
