"""A plaintext broker, the default, does not import what only TLS or SASL listeners use:
the cryptography package and the SASL mechanisms cost start-up time and memory. A single
broker does not import what only a cluster uses either (the etcd client and httpx)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECURITY_ONLY = ("cryptography", "kbroker.security.tls", "kbroker.security.sasl.mechanisms",
                 "kbroker.security.sasl.authenticator", "kbroker.security.sasl.oauthbearer")
CLUSTER_ONLY = ("httpx", "kbroker.etcd.client", "kbroker.metadata.cluster", "kbroker.metadata.assignment",
                "kbroker.metadata.controller")


def _imported_after(code: str, watched: tuple[str, ...] = SECURITY_ONLY) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {watched!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_plaintext_broker_imports_no_tls_or_sasl_code(tmp_path: Path) -> None:
    built = _imported_after(
        "from kbroker.broker import Broker\nfrom kbroker.config import BrokerConfig\n"
        f"b = Broker(BrokerConfig({{'log.dirs': {str(tmp_path / 'data')!r}}}))\nb.log_manager.shutdown()")
    assert built == set()


def test_a_tls_listener_imports_them(tmp_path: Path) -> None:
    # The check above can fail: the same probe sees the modules once a listener needs them.
    built = _imported_after(
        "from tools.pki import make_pki\nfrom pathlib import Path\n"
        f"pki = make_pki(Path({str(tmp_path / 'pki')!r}))\n"
        "from kbroker.broker import Broker\nfrom kbroker.config import BrokerConfig\n"
        f"b = Broker(BrokerConfig({{'log.dirs': {str(tmp_path / 'data')!r}, "
        "'listeners': 'SSL://127.0.0.1:0', 'ssl.keystore.type': 'PEM', "
        "'ssl.keystore.location': str(pki.server)}))\nb.log_manager.shutdown()")
    assert "kbroker.security.tls" in built and "cryptography" in built


def test_a_single_broker_imports_no_cluster_code(tmp_path: Path) -> None:
    built = _imported_after(
        "import anyio\nfrom kbroker.broker import Broker\nfrom kbroker.config import BrokerConfig\n"
        "from kbroker.handlers import registry\nregistry()\n"  # every handler, as start-up loads them
        f"b = Broker(BrokerConfig({{'log.dirs': {str(tmp_path / 'data')!r}}}))\n"
        "async def main():\n"
        "    async with anyio.create_task_group() as tg:\n"
        "        await b.metadata.start(tg)\n"
        "anyio.run(main)\nb.log_manager.shutdown()", CLUSTER_ONLY)
    assert built == set()


def test_a_cluster_member_imports_them(tmp_path: Path) -> None:
    # The same probe sees them once etcd.endpoints is set and the broker joins (etcd is not there).
    built = _imported_after(
        "from kbroker.broker import Broker, StartupError\nfrom kbroker.config import BrokerConfig\n"
        "try:\n"
        f"    Broker(BrokerConfig({{'log.dirs': {str(tmp_path / 'data')!r}, "
        "'etcd.endpoints': 'http://127.0.0.1:1'}))\n"
        "except StartupError:\n"
        "    pass\n", CLUSTER_ONLY)
    assert {"httpx", "kbroker.etcd.client"} <= built
