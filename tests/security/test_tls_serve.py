"""``kbroker serve`` with SSL listeners: each listener printed with its security protocol, and a
TLS store that cannot be used stops start-up with one line naming the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kbroker.broker import Broker, StartupError
from kbroker.testing import make_config
from tests.server.broker_process import BrokerProcess
from tools.pki import PASSWORD, make_pki

#: These tests start `kbroker serve` as a subprocess.
pytestmark = pytest.mark.integration


def test_serve_prints_each_listener_with_its_protocol(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ssl_keys = [f"listener.name.{name}.{key}" for name in ("ssl", "client") for key in (
        "ssl.keystore.type=PKCS12", f"ssl.keystore.location={pki.file('server.p12')}",
        f"ssl.keystore.password={PASSWORD}")]
    with BrokerProcess(tmp_path / "data", "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,CLIENT://127.0.0.1:0",
                       "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CLIENT:SSL",
                       *ssl_keys) as broker:
        line = broker.first_line
    assert re.search(r"listening on PLAINTEXT://127\.0\.0\.1:\d+, SSL://127\.0\.0\.1:\d+, "
                     r"SSL://127\.0\.0\.1:\d+ \(listener CLIENT\), data in ", line), line
    assert PASSWORD not in "".join(broker.output)


def test_serve_refuses_a_jks_store_in_one_line(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    args = [sys.executable, "-m", "kbroker", "serve"]
    for override in ("listeners=SSL://127.0.0.1:0", f"log.dirs={tmp_path / 'data'}",
                     f"ssl.keystore.location={pki.file('server.p12')}", f"ssl.keystore.password={PASSWORD}"):
        args += ["--override", override]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBROKER_")}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kbroker: error:")]
    assert len(errors) == 1, result.stderr
    assert "listener SSL: ssl.keystore.type" in errors[0] and "keytool" in errors[0], errors[0]
    assert PASSWORD not in result.stderr
    assert "listening on" not in result.stdout


def test_broker_start_up_error_names_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    config = make_config(tmp_path / "data", {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM",
                                             "ssl.keystore.location": str(missing)})
    with pytest.raises(StartupError, match=f"listener SSL: ssl.keystore.location: cannot read {missing}"):
        Broker(config)
    # Refused before the data directory was even created.
    assert not (tmp_path / "data").exists()
