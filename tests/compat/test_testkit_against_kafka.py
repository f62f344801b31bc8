"""The plugin's session fixtures against Apache Kafka: a suite run with ``--kafka-bootstrap``
pointing at the reference Kafka passes as it does on the embedded broker.

The reference Kafka is shared with the other compat tests of the session, so the two tests
that empty the whole broker (``reset()``) are left out here."""

from __future__ import annotations

import pytest

from tests.testing.testkit_suite import SUITE

pytest_plugins = ["pytester"]


def test_session_fixtures_against_apache_kafka(pytester: pytest.Pytester, kafka_reference: object,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = kafka_reference.bootstrap  # type: ignore[attr-defined]
    monkeypatch.setenv("EXPECTED_BOOTSTRAP", bootstrap)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
                                          f"--kafka-bootstrap={bootstrap}", "-k", "not clean")
    result.assert_outcomes(passed=5, deselected=2)
