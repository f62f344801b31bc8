"""What a test does when something it needs is missing: in CI (``CI=true``) a missing client,
tool or service is a failure; elsewhere the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str) -> None:
    """Fail (in CI) or skip (elsewhere) the running test because of ``reason``."""
    if IN_CI:
        pytest.fail(f"unavailable in CI: {reason}")
    pytest.skip(f"unavailable: {reason}")


def reference_unavailable() -> str | None:
    """Why a reference Kafka (tools/kafka_reference) cannot run here, or None."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (the reference Kafka runs from Maven Central's jars)"
    return None


@contextmanager
def reference_kafka(workdir: Path, extra_config: Mapping[str, str] | None = None) -> Iterator[Any]:
    """A running :class:`tools.kafka_reference.KafkaReference` in ``workdir``, stopped on exit; the
    test fails (CI) or skips when Java, Maven or the jars are not to be had."""
    why = reference_unavailable()
    if why is not None:
        need(f"reference Kafka: {why}")
    from tools.kafka_reference import KafkaReference, resolve_jars

    try:
        resolve_jars()
    except Exception as e:  # Maven's failure text is the reason
        need(f"reference Kafka: resolving the jars failed: {str(e)[:500]}")
    with KafkaReference(workdir, heap="384m", extra_config=dict(extra_config or {})) as kafka:
        yield kafka
