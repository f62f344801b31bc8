"""The wire differential check (compat/wirediff), fast subset: every API kbroker serves at its
highest version, valid and malformed requests, against the session's reference Kafka.

Fails on a difference compat/wirediff/accepted.toml does not list; the report of the run is
written to the test's tmp_path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compat.broker import Broker
from compat.wirediff import report, runner
from compat.wirediff.__main__ import KBROKER_OVERRIDES


def test_wire_diff_fast(kafka_reference: Any, tmp_path: Path) -> None:
    with Broker(overrides=KBROKER_OVERRIDES) as kb:
        run = runner.run(kafka_reference.bootstrap, kb.bootstrap, fast=True)
    (tmp_path / "WIRE-DIFF.md").write_text(report.render(run))
    unaccepted = [f"{r.api_name} v{r.version} {r.name}: {d.render()}" for r in run.results for d in r.unaccepted]
    assert not unaccepted, "differences from Kafka not in accepted.toml:\n" + "\n".join(unaccepted[:40])
    covered = {r.api for r in run.results}
    assert set(run.kbroker_versions) <= covered
    for key, (_, hi) in run.kbroker_versions.items():
        assert any(r.api == key and r.version == hi and r.kind == "valid" for r in run.results), key
    assert sum(r.kind == "malformed" for r in run.results) >= 3 * len(run.kbroker_versions)
    assert sum(r.status == "same" for r in run.results) > len(run.results) // 2
