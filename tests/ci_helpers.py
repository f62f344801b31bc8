"""What a test does when something it needs is missing: in CI (``CI=true``) a missing client,
tool or service is a failure; elsewhere the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil

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
