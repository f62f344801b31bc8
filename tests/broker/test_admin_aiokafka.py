"""Topic administration through aiokafka against a live broker (client on its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


def run_admin(bootstrap: str, body: Callable[[AIOKafkaAdminClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            return await body(admin)
        finally:
            await admin.close()

    return asyncio.run(main())


def test_create_describe_delete(kafka_bootstrap: str) -> None:
    async def body(admin: AIOKafkaAdminClient) -> None:
        resp = await admin.create_topics([NewTopic("t1", 3, 1), NewTopic("bad topic", 1, 1),
                                          NewTopic("zero", 0, 1), NewTopic("rf3", 1, 3)])
        assert [(t[0], t[1]) for t in resp.topic_errors] == [("t1", 0), ("bad topic", 17), ("zero", 37),
                                                            ("rf3", 38)]
        assert await admin.list_topics() == ["t1"]
        (desc,) = await admin.describe_topics(["t1"])
        assert [(p["partition"], p["leader"]) for p in desc["partitions"]] == [(0, 1), (1, 1), (2, 1)]
        cluster = await admin.describe_cluster()
        assert cluster["controller_id"] == 1 and len(cluster["cluster_id"]) == 22
        (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "t1")])
        entries = {e[0]: e for e in configs.resources[0][4]}
        assert entries["retention.ms"][1] == "604800000"
        grown = await admin.create_partitions({"t1": NewPartitions(5)})
        assert grown.topic_errors[0][1] == 0
        deleted = await admin.delete_topics(["t1", "t1-missing"])
        assert [(t[0], t[1]) for t in deleted.topic_error_codes] == [("t1", 0), ("t1-missing", 3)]
        assert await admin.list_topics() == []

    run_admin(kafka_bootstrap, body)


def test_client_metadata(kafka_bootstrap: str, kafka_broker: Any) -> None:
    run_admin(kafka_bootstrap, lambda admin: admin.create_topics([NewTopic("meta", 2, 1)]))

    async def main() -> None:
        client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap)
        await client.bootstrap()
        try:
            md = await client.fetch_all_metadata()
            assert md.topics() == {"meta"}
            assert md.partitions_for_topic("meta") == {0, 1}
            assert md.leader_for_partition(_tp("meta", 1)) == 1
            assert [b.port for b in md.brokers()] == [kafka_broker.port]
        finally:
            await client.close()

    asyncio.run(main())


def _tp(topic: str, partition: int) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(topic, partition)
