"""Hostile ACL requests over real sockets: a DeleteAcls of many filters over many ACLs is
work of filters x ACLs, which must not stop the broker serving other clients meanwhile."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from handler_calls import handler_context, run_counting_yields
from socket_helpers import read_frame

from kbroker.codec import decode_response, encode_request
from kbroker.testing import BrokerThread

AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              "super.users": "User:ANONYMOUS"}


def call(s: socket.socket, key: int, version: int, body: dict[str, Any], correlation: int = 1) -> Any:
    s.sendall(encode_request(key, version, correlation, body))
    return decode_response(key, version, read_frame(s))[1]


def test_a_large_delete_acls_does_not_block_other_clients(tmp_path: Path) -> None:
    acls, filters = 10_000, 600
    with BrokerThread(tmp_path / "data", AUTHORIZER) as b:
        admin = socket.create_connection(("127.0.0.1", b.port), timeout=120)
        other = socket.create_connection(("127.0.0.1", b.port), timeout=120)
        creations = [{"resource_type": 2, "resource_name": f"topic-{i}", "resource_pattern_type": 3,
                      "principal": f"User:u{i}", "host": "*", "operation": 3, "permission_type": 3}
                     for i in range(acls)]
        assert {r["error_code"] for r in call(admin, 30, 3, {"creations": creations})["results"]} == {0}
        # Filters matching nothing, so each is compared with every ACL.
        body = {"filters": [{"resource_type_filter": 2, "resource_name_filter": f"absent-{i}", "pattern_type_filter": 3,
                             "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1}
                            for i in range(filters)]}
        started = time.monotonic()
        admin.sendall(encode_request(31, 3, 2, body))
        time.sleep(0.3)  # the broker is matching by now
        t0 = time.monotonic()
        call(other, 18, 0, {}, 3)
        ping = time.monotonic() - t0
        resp = decode_response(31, 3, read_frame(admin))[1]
        took = time.monotonic() - started
        assert [r["matching_acls"] for r in resp["filter_results"]] == [[]] * filters
        assert ping < max(0.5, took / 3), (ping, took)
        # The ACLs are all still there.
        described = call(admin, 29, 3, {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
                                        "principal_filter": None, "host_filter": None, "operation": 1,
                                        "permission_type": 1}, 4)
        assert len(described["resources"]) == acls


def test_acl_requests_with_many_bindings_let_other_connections_in(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from test_quotas import MemoryStore

    from kbroker.handlers import create_acls, delete_acls, describe_acls
    from kbroker.handlers.api import MANY, DetachedBody
    from kbroker.security.authorizer import StandardAuthorizer
    from kbroker.testing import make_config

    count = MANY * 4
    authorizer = StandardAuthorizer(make_config(tmp_path, AUTHORIZER), MemoryStore())
    broker = SimpleNamespace(authorizer=authorizer)
    creations = [{"resource_type": 2, "resource_name": f"topic-{i}", "resource_pattern_type": 3,
                  "principal": f"User:u{i}", "host": "*", "operation": 3, "permission_type": 3} for i in range(count)]
    out, yields = run_counting_yields(create_acls.handle(handler_context(30, 3, {"creations": creations}, broker)))
    assert isinstance(out, DetachedBody) and [r["error_code"] for r in out["results"]] == [0] * count
    assert yields >= 4 and len(authorizer) == count
    every = {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1, "principal_filter": None,
             "host_filter": None, "operation": 1, "permission_type": 1}
    out, yields = run_counting_yields(describe_acls.handle(handler_context(29, 3, every, broker)))
    assert isinstance(out, DetachedBody) and len(out["resources"]) == count
    assert yields >= 1  # selected in a worker thread
    # A principal without CLUSTER ALTER gets one error per binding, encoded off the loop too.
    denied = SimpleNamespace(authorizer=SimpleNamespace(authorize=lambda *a: False))
    out, _ = run_counting_yields(create_acls.handle(handler_context(30, 3, {"creations": creations}, denied)))
    assert isinstance(out, DetachedBody) and {r["error_code"] for r in out["results"]} == {31}
    absent = [{**every, "resource_type_filter": 2, "resource_name_filter": f"absent-{i}", "pattern_type_filter": 3}
              for i in range(count)]
    out, _ = run_counting_yields(delete_acls.handle(handler_context(31, 3, {"filters": absent}, denied)))
    assert isinstance(out, DetachedBody) and {r["error_code"] for r in out["filter_results"]} == {31}
