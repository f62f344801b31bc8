"""Group configs without a broker: Kafka's checks, the defaults, the file store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest

from kbroker.codec.error_codes import ErrorCode
from kbroker.config import BrokerConfig, ConfigSource
from kbroker.groups.group_configs import (
    GROUP_CONFIG_FILE,
    FileGroupConfigStore,
    GroupConfigs,
    _duration_ms,
    default_values,
    validate,
)

CONFIG = BrokerConfig()


@pytest.mark.parametrize(("text", "ms"), [
    ("PT1H", 3_600_000), ("P1D", 86_400_000), ("PT0.5S", 500), ("P1DT2H3M4.5S", 93_784_500), ("pt15m", 900_000),
    ("-PT1S", -1000), ("PT-1S", -1000), ("P", None), ("PT", None), ("1H", None), ("PT1X", None), ("", None),
    # Java's Duration.parse refuses a numeric overflow of its long seconds.
    ("PT9223372036854775807S", 9223372036854775807000), ("PT9223372036854775808S", None),
    ("P106751991167300D", 106751991167300 * 86_400_000), ("P106751991167301D", None),
    ("P" + "9" * 5000 + "D", None),
])
def test_iso_durations(text: str, ms: int | None) -> None:
    assert _duration_ms(text) == ms


def test_defaults_are_kafkas() -> None:
    assert default_values(CONFIG) == {
        "consumer.session.timeout.ms": "45000", "consumer.heartbeat.interval.ms": "5000",
        "share.session.timeout.ms": "45000", "share.heartbeat.interval.ms": "5000",
        "share.record.lock.duration.ms": "30000", "share.auto.offset.reset": "latest",
        "share.isolation.level": "read_uncommitted", "streams.heartbeat.interval.ms": "5000",
        "streams.session.timeout.ms": "45000", "streams.num.standby.replicas": "0",
        "streams.initial.rebalance.delay.ms": "3000"}
    assert validate({}, CONFIG) is None


@pytest.mark.parametrize(("overrides", "message"), [
    ({"nope": "1"}, "Unknown group config name: nope"),
    ({"consumer.session.timeout.ms": "0"},
     "Invalid value 0 for configuration consumer.session.timeout.ms: Value must be at least 1"),
    ({"consumer.session.timeout.ms": "99999999999"},
     "Invalid value 99999999999 for configuration consumer.session.timeout.ms: Not a number of type INT"),
    ({"consumer.heartbeat.interval.ms": "4999"},
     "consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms"),
    ({"consumer.heartbeat.interval.ms": "15001"},
     "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
    ({"share.session.timeout.ms": "60001"},
     "share.session.timeout.ms must be less than or equal to group.share.max.session.timeout.ms"),
    ({"share.record.lock.duration.ms": "14999"},
     "share.record.lock.duration.ms must be greater than or equal to group.share.min.record.lock.duration.ms"),
    ({"share.record.lock.duration.ms": "60001"},
     "share.record.lock.duration.ms must be less than or equal to group.share.max.record.lock.duration.ms"),
    ({"streams.num.standby.replicas": "3"},
     "streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas"),
    ({"streams.num.standby.replicas": "-1"},
     "Invalid value -1 for configuration streams.num.standby.replicas: Value must be at least 0"),
    ({"share.isolation.level": "READ_COMMITTED"},
     "Invalid value READ_COMMITTED for configuration share.isolation.level: String must be one of: "
     "read_committed, read_uncommitted"),
    ({"share.auto.offset.reset": "by_duration:PT-1H"},
     "Invalid value by_duration:PT-1H for configuration share.auto.offset.reset: Negative duration is not allowed."),
    ({"share.auto.offset.reset": "by_duration:P" + "9" * 5000 + "D"},
     "Invalid value by_duration:P" + "9" * 5000 + "D for configuration share.auto.offset.reset: Unable to parse "
     "duration string"),
    ({"share.auto.offset.reset": "by_duration:soon"},
     "Invalid value by_duration:soon for configuration share.auto.offset.reset: Unable to parse duration string"),
])
def test_kafkas_checks(overrides: dict[str, str], message: str) -> None:
    assert validate(overrides, CONFIG) == message


def test_valid_values() -> None:
    for overrides in ({"consumer.session.timeout.ms": "60000", "consumer.heartbeat.interval.ms": "15000"},
                      {"share.auto.offset.reset": "EARLIEST"}, {"share.auto.offset.reset": "by_duration:P7D"},
                      {"share.record.lock.duration.ms": "15000"}, {"streams.num.standby.replicas": "2"}):
        assert validate(overrides, CONFIG) is None, overrides


def _configs(tmp_path: Path) -> GroupConfigs:
    return GroupConfigs(FileGroupConfigStore(tmp_path), lambda: CONFIG)


def test_alter_persist_reload(tmp_path: Path) -> None:
    async def go() -> None:
        gc = _configs(tmp_path)
        assert await gc.alter("g", {"share.auto.offset.reset": "earliest"}, replace=False, validate_only=False) == (
            ErrorCode.NONE, None)
        assert await gc.alter("g", {"consumer.session.timeout.ms": "50000"}, replace=False,
                              validate_only=False) == (ErrorCode.NONE, None)
        assert await gc.alter("h", {"share.isolation.level": "read_committed"}, replace=False,
                              validate_only=True) == (ErrorCode.NONE, None)
        code, message = await gc.alter("g", {"consumer.session.timeout.ms": "1"}, replace=False, validate_only=False)
        assert code == ErrorCode.INVALID_CONFIG and message is not None
        assert await gc.alter("", {}, replace=False, validate_only=False) == (
            ErrorCode.INVALID_REQUEST, "Group name must not be empty")

    anyio.run(go)
    saved = json.loads((tmp_path / GROUP_CONFIG_FILE).read_text())
    assert saved == {"version": 1, "groups": {"g": {"consumer.session.timeout.ms": "50000",
                                                    "share.auto.offset.reset": "earliest"}}}
    again = _configs(tmp_path)
    assert again.get("g", "consumer.session.timeout.ms") == "50000" and again.group_ids() == ["g"]
    entries = {e.name: e for e in again.describe("g")}
    assert entries["share.auto.offset.reset"].source == ConfigSource.GROUP_CONFIG
    assert entries["share.auto.offset.reset"].synonyms[0].source == ConfigSource.GROUP_CONFIG
    assert entries["share.isolation.level"].source == ConfigSource.DEFAULT_CONFIG
    assert entries["share.isolation.level"].synonyms == ()

    async def replace_all() -> None:  # AlterConfigs: the new set replaces the old; an empty one drops the group
        assert await again.alter("g", {}, replace=True, validate_only=False) == (ErrorCode.NONE, None)

    anyio.run(replace_all)
    assert again.group_ids() == [] and _configs(tmp_path).group_ids() == []


def test_unwritable_store_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / GROUP_CONFIG_FILE).mkdir()  # a directory where the file goes: the write fails
    gc = _configs(tmp_path)

    async def go() -> None:
        code, message = await gc.alter("g", {"share.auto.offset.reset": "earliest"}, replace=False,
                                       validate_only=False)
        assert code == ErrorCode.KAFKA_STORAGE_ERROR and message is not None

    anyio.run(go)
    assert gc.overrides("g") == {}


@pytest.mark.parametrize("content", ["not json", '{"version": 2, "groups": {}}', '{"version": 1, "groups": []}'])
def test_unreadable_file_is_ignored(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / GROUP_CONFIG_FILE).write_text(content)
    assert _configs(tmp_path).group_ids() == []
    assert "group configs" in caplog.text


class _RacingStore:
    """A store that loses the first ``losses`` compare-and-swaps, as etcd does when another
    broker changed the group meanwhile."""

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.saved: list[dict[str, str]] = []

    def load(self) -> dict[str, dict[str, str]]:
        return {}

    async def save(self, group_id: str, values: Mapping[str, str],
                   everything: Mapping[str, dict[str, str]]) -> tuple[int, str | None]:
        if self.losses:
            self.losses -= 1
            return ErrorCode.CONCURRENT_TRANSACTIONS, "changed meanwhile"
        self.saved.append(dict(values))
        return ErrorCode.NONE, None


@pytest.mark.parametrize(("losses", "expected"), [(2, ErrorCode.NONE), (5, ErrorCode.CONCURRENT_TRANSACTIONS)])
def test_a_lost_race_is_retried_a_few_times(losses: int, expected: int) -> None:
    store = _RacingStore(losses)
    gc = GroupConfigs(store, lambda: CONFIG)

    async def go() -> int:
        code, _ = await gc.alter("g", {"share.isolation.level": "read_committed"}, replace=False,
                                 validate_only=False)
        return code

    assert anyio.run(go) == expected
    assert store.saved == ([{"share.isolation.level": "read_committed"}] if expected == ErrorCode.NONE else [])


def test_the_brokers_lock_duration_bounds_apply() -> None:
    """group.share.min/max.record.lock.duration.ms are broker settings that bound the group config
    (librdkafka's share tests run with a minimum of 1000 ms and set 3000)."""
    low = BrokerConfig({"group.share.min.record.lock.duration.ms": "1000"})
    assert validate({"share.record.lock.duration.ms": "3000"}, low) is None
    assert validate({"share.record.lock.duration.ms": "3000"}, BrokerConfig({})) is not None
    high = BrokerConfig({"group.share.max.record.lock.duration.ms": "90000"})
    assert validate({"share.record.lock.duration.ms": "90000"}, high) is None
