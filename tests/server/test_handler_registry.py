"""The handler registry: every listed module is served, and the advertised API set is pinned.

Unit tests (no broker); tests/server/test_handler_registry_wire.py checks the same over the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kbroker import handlers
from kbroker.handlers.api_versions import api_keys

#: What ApiVersions advertises, key -> (min, max). Changing the served APIs or versions
#: must change this table in the same commit.
ADVERTISED = {
    0: (0, 13),  # Produce (served from v3; v0 advertised for librdkafka)
    1: (4, 18),  # Fetch
    2: (0, 11),  # ListOffsets
    3: (0, 13),  # Metadata
    8: (0, 10),  # OffsetCommit (v9 member epochs, v10 topic ids: KIP-848)
    9: (0, 10),  # OffsetFetch
    10: (0, 6),  # FindCoordinator
    11: (0, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 6),  # DescribeGroups
    16: (0, 5),  # ListGroups
    17: (0, 1),  # SaslHandshake (ILLEGAL_SASL_STATE outside SASL listeners)
    18: (0, 4),  # ApiVersions
    19: (0, 7),  # CreateTopics
    20: (0, 6),  # DeleteTopics
    21: (0, 2),  # DeleteRecords
    22: (0, 5),  # InitProducerId
    23: (0, 4),  # OffsetForLeaderEpoch
    24: (0, 5),  # AddPartitionsToTxn
    25: (0, 4),  # AddOffsetsToTxn
    26: (0, 4),  # EndTxn (v5 is transaction version 2)
    27: (1, 2),  # WriteTxnMarkers
    28: (0, 5),  # TxnOffsetCommit (v5, for transactions v2 clients, is served as v4)
    29: (0, 3),  # DescribeAcls
    30: (0, 3),  # CreateAcls
    31: (0, 3),  # DeleteAcls
    32: (0, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    35: (0, 5),  # DescribeLogDirs
    36: (0, 2),  # SaslAuthenticate
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    43: (0, 2),  # ElectLeaders
    44: (0, 1),  # IncrementalAlterConfigs
    45: (0, 1),  # AlterPartitionReassignments
    46: (0, 0),  # ListPartitionReassignments
    47: (0, 0),  # OffsetDelete
    48: (0, 1),  # DescribeClientQuotas
    49: (0, 1),  # AlterClientQuotas
    50: (0, 0),  # DescribeUserScramCredentials
    51: (0, 0),  # AlterUserScramCredentials
    60: (0, 2),  # DescribeCluster
    61: (0, 0),  # DescribeProducers
    65: (0, 0),  # DescribeTransactions
    66: (0, 2),  # ListTransactions
    68: (0, 1),  # ConsumerGroupHeartbeat
    69: (0, 1),  # ConsumerGroupDescribe
    74: (0, 1),  # ListConfigResources
    75: (0, 0),  # DescribeTopicPartitions
    76: (1, 1),  # ShareGroupHeartbeat (KIP-932; v0 was Kafka 4.0's early access)
    77: (1, 1),  # ShareGroupDescribe
    78: (1, 1),  # ShareFetch
    79: (1, 1),  # ShareAcknowledge
    90: (0, 0),  # DescribeShareGroupOffsets
    91: (0, 0),  # AlterShareGroupOffsets
    92: (0, 0),  # DeleteShareGroupOffsets
}


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    handlers.registry.cache_clear()
    yield
    handlers.registry.cache_clear()


def test_missing_handler_module_fails_loudly(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    monkeypatch.setattr(handlers, "MODULES", [*handlers.MODULES, "no_such_api"])
    with pytest.raises(ModuleNotFoundError, match="no_such_api"):
        handlers.registry()


def test_duplicate_api_key_fails_loudly(monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> None:
    monkeypatch.setattr(handlers, "MODULES", [*handlers.MODULES, "produce"])
    with pytest.raises(RuntimeError, match="already registered"):
        handlers.registry()


def test_registry_advertises_the_pinned_table() -> None:
    assert {k["api_key"]: (k["min_version"], k["max_version"]) for k in api_keys()} == ADVERTISED
