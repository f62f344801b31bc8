"""Fixtures for the client CLI tests: a real in-process broker and a CLI runner."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import NamedTuple

import pytest

from kbroker.cli import main
from kbroker.testing import kafka_bootstrap, kafka_broker  # noqa: F401


class Result(NamedTuple):
    code: int
    out: str
    err: str


Runner = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        kafka_bootstrap: str) -> Runner:  # noqa: F811
    """``cli("topics", "--list", stdin="...")``: run the CLI against the test broker."""

    def run(*argv: str, stdin: str | None = None, bootstrap: str | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main([*argv, "--bootstrap-server", bootstrap or kafka_bootstrap])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
