"""``python -m kbroker`` runs the client tools as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kbroker.client import KafkaClient
from kbroker.client.admin import create_topic
from kbroker.testing import BrokerThread

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_kbroker_topics_list(kafka_broker: BrokerThread) -> None:
    with KafkaClient(kafka_broker.bootstrap) as client:
        create_topic(client, "via-subprocess", 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "kbroker", "topics", "--list", "--bootstrap-server", kafka_broker.bootstrap],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "via-subprocess" in proc.stdout.split()
