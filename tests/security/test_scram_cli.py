"""``kbroker users`` against a real broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from kbroker.cli import main
from kbroker.testing import BrokerThread
from tests.security.test_scram_api import logs_in


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def users(capsys: pytest.CaptureFixture[str], kafka_broker: BrokerThread) -> Callable[..., Result]:
    def run(*argv: str, bootstrap: str | None = None) -> Result:
        capsys.readouterr()
        code = main(["users", *argv, "--bootstrap-server", bootstrap or kafka_broker.bootstrap])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def test_add_describe_delete(users: Callable[..., Result], kafka_broker: BrokerThread) -> None:
    assert users("--describe") == (0, "", "")
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "alice-secret")
    assert r == (0, "Set the SCRAM-SHA-256 credential of user 'alice' (4096 iterations).\n", "")
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-512", "--password", "a512", "--iterations", "8192")
    assert r.code == 0, r.err
    assert users("--add-scram", "bob", "--mechanism", "SCRAM-SHA-512", "--password", "b").code == 0
    assert logs_in(kafka_broker, "SCRAM-SHA-256", "alice", "alice-secret")
    assert logs_in(kafka_broker, "SCRAM-SHA-512", "alice", "a512")

    r = users("--describe")
    assert r == (0, "SCRAM credential configs for user-principal 'alice' are SCRAM-SHA-256=iterations=4096, "
                    "SCRAM-SHA-512=iterations=8192\n"
                    "SCRAM credential configs for user-principal 'bob' are SCRAM-SHA-512=iterations=4096\n", "")
    r = users("--describe", "bob", "nobody")
    assert r.code == 1
    assert r.out == "SCRAM credential configs for user-principal 'bob' are SCRAM-SHA-512=iterations=4096\n"
    assert r.err == ("kbroker: error: RESOURCE_NOT_FOUND: Attempt to describe a user credential that does not "
                     "exist: nobody\n")

    r = users("--delete-scram", "alice", "--mechanism", "SCRAM-SHA-256")
    assert r == (0, "Deleted the SCRAM-SHA-256 credential of user 'alice'.\n", "")
    assert not logs_in(kafka_broker, "SCRAM-SHA-256", "alice", "alice-secret")
    r = users("--delete-scram", "alice", "--mechanism", "SCRAM-SHA-256")
    assert r == (1, "", "kbroker: error: RESOURCE_NOT_FOUND: Attempt to delete a user credential that does "
                        "not exist\n")


def test_errors(users: Callable[..., Result]) -> None:
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "x", "--iterations", "100")
    assert r == (1, "", "kbroker: error: UNACCEPTABLE_CREDENTIAL: Too few iterations\n")
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "x", "--iterations", "20000")
    assert r.code == 1 and "UNACCEPTABLE_CREDENTIAL: --iterations must be at most 16384" in r.err
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "x", "--iterations", "0")
    assert r == (1, "", "kbroker: error: INVALID_REQUEST: --iterations must be positive\n")
    r = users("--add-scram", "", "--mechanism", "SCRAM-SHA-256", "--password", "x")
    assert r == (1, "", "kbroker: error: UNACCEPTABLE_CREDENTIAL: Username must not be empty\n")
    r = users("--add-scram", "alice", "--password", "x")
    assert r.code == 1 and "--add-scram needs --mechanism" in r.err
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256")
    assert r == (1, "", "kbroker: error: INVALID_REQUEST: --add-scram needs --password\n")
    r = users("--add-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "")
    assert r.code == 1 and "must not be empty" in r.err
    r = users("--delete-scram", "alice")
    assert r.code == 1 and "--delete-scram needs --mechanism" in r.err
    r = users("--delete-scram", "alice", "--mechanism", "SCRAM-SHA-256", "--password", "x")
    assert r.code == 1 and "takes no --password" in r.err
    r = users("--describe", "--mechanism", "SCRAM-SHA-256")
    assert r.code == 1 and "--describe takes neither" in r.err
    # Usage errors (argparse): unknown mechanism, no action, two actions.
    assert users("--add-scram", "a", "--mechanism", "SCRAM-SHA-1", "--password", "x").code == 2
    assert users().code == 2
    assert users("--describe", "--delete-scram", "a").code == 2
    # Nothing above created a credential.
    assert users("--describe") == (0, "", "")


def test_unreachable_broker(users: Callable[..., Result]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = users("--describe", bootstrap=f"127.0.0.1:{port}")
    assert r.code == 1 and r.err.startswith("kbroker: error: ") and r.out == ""
