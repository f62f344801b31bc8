"""The tests of librdkafka 2.15.1's suite that exercise the new group protocols against a broker.

KIP-848: librdkafka has no separate KIP-848 tests; its consumer-group tests take
``group.protocol`` from ``TEST_CONSUMER_GROUP_PROTOCOL`` and branch on
``test_consumer_group_protocol_classic()``. These are the ones that do and need a broker (the
``TEST_F_LOCAL`` ones run against librdkafka's mock cluster: 0045_*_mock, 0106, 0117, 0120,
0143, 0147, 0148, 0153). KIP-932: the share-consumer tests 0170 onwards that need a broker
(``TEST_BRKVER(4, 2, 0, 0)``); 0190_share_consumer_telemetry is a manual test (it needs a
client-telemetry receiver) and is left out.
"""

from __future__ import annotations

#: Consumer-group tests run with group.protocol=consumer.
KIP848_TESTS = [
    "0018_cgrp_term",
    "0022_consume_batch",
    "0045_subscribe_update",
    "0045_subscribe_update_topic_remove",
    "0045_subscribe_update_non_exist_and_partchange",
    "0045_resubscribe_with_regex",
    "0045_subscribe_many_updates",
    "0081_admin",
    "0084_destroy_flags",
    "0102_static_group_rebalance",
    "0109_auto_create_topics",
    "0113_cooperative_rebalance",
    "0118_commit_rebalance",
    "0132_strategy_ordering",
]

#: Share-consumer tests (KIP-932) that need a broker.
SHARE_TESTS = [
    "0170_share_consumer_subscription",
    "0171_share_consumer_consume",
    "0172_share_consumer_acknowledge",
    "0173_share_consumer_commit_async",
    "0174_share_consumer_concurrency",
    "0175_share_consumer_groups",
    "0176_share_consumer_commit_sync",
    "0177_share_consumer_transactions",
    "0178_share_consumer_close",
    "0179_share_consumer_destroy",
    "0180_share_consumer_config",
    "0181_share_consumer_topic_delete",
    "0184_share_consumer_topic_recreate",
    "0185_share_consumer_max_poll_interval",
]

#: What ``python -m compat.librdkafka --suite 2.15 --all`` runs.
V215_CANDIDATES = KIP848_TESTS + SHARE_TESTS
