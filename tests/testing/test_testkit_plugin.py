"""The pytest plugin's session fixtures, as a user's suite sees them: one broker for the whole
session served to confluent-kafka, kafka-python and aiokafka, fresh topics per test, an empty
broker after ``kafka_clean``, and the same suite run against a Kafka given by
``--kafka-bootstrap``."""

from __future__ import annotations

import pytest

from kbroker.testing import BrokerThread
from kbroker.testing.plugin import BOOTSTRAP_ENV, external_bootstrap
from tests.testing.testkit_suite import SUITE

pytest_plugins = ["pytester"]
# The session broker runs inside an inner pytest run, out of sight of tests/conftest.py's tiering.
pytestmark = pytest.mark.integration


def test_session_fixture_serves_three_clients_and_cleans(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=7)


def test_same_suite_runs_against_a_running_kafka(pytester: pytest.Pytester, tmp_path, monkeypatch) -> None:
    """--kafka-bootstrap sends the session fixtures to a Kafka the suite did not start; the
    topics it made are deleted again, and reset() emptied that broker."""
    with BrokerThread(tmp_path / "outside") as outside:
        with outside.admin() as admin:
            admin.create_topic("before-the-suite")
        monkeypatch.setenv("EXPECTED_BOOTSTRAP", outside.bootstrap)
        pytester.makepyfile(test_suite=SUITE)
        result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", f"--kafka-bootstrap={outside.bootstrap}")
        result.assert_outcomes(passed=7)
        with outside.admin() as admin:
            assert admin.topics() == [] and admin.groups() == []


def test_environment_variable_names_the_kafka(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    assert external_bootstrap(pytester.parseconfig()) is None
    assert external_bootstrap(pytester.parseconfig("--kafka-bootstrap", "h1:9092")) == "h1:9092"
    monkeypatch.setenv(BOOTSTRAP_ENV, " h2:9092 ")
    assert external_bootstrap(pytester.parseconfig()) == "h2:9092"
    # the option wins over the environment
    assert external_bootstrap(pytester.parseconfig("--kafka-bootstrap=h1:9092")) == "h1:9092"


def test_broker_marker_sets_the_per_test_broker_configs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.kafka_broker(overrides={"num.partitions": 5})
        def test_marked(kafka_broker):
            with kafka_broker.admin() as admin:
                admin.create_topic("t", partitions=-1)
                assert admin.partitions("t") == 5

        def test_unmarked(kafka_broker):
            with kafka_broker.admin() as admin:
                admin.create_topic("t", partitions=-1)
                assert admin.partitions("t") == 1

        @pytest.mark.kafka_topic(partitions=2, colour="red")
        def test_bad_topic_marker(kafka_topic):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=2, errors=1)
    assert "unknown argument(s) ['colour']" in result.stdout.str()
