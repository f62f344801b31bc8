"""Topic administration: create, delete, add partitions, describe configs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kbroker.client.cluster import KafkaClient
from kbroker.client.errors import UNKNOWN_TOPIC_OR_PARTITION, KafkaError, check

CREATE_TOPICS = 19
DELETE_TOPICS = 20
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37

RESOURCE_TOPIC = 2
#: DescribeConfigs config_source values.
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_DEFAULT = 5


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    read_only: bool
    is_default: bool
    is_sensitive: bool
    source: int


def create_topic(client: KafkaClient, name: str, partitions: int = -1, replication_factor: int = -1,
                 configs: Mapping[str, str] | None = None, *, timeout_ms: int = 30000,
                 validate_only: bool = False) -> None:
    """Create one topic (-1 partitions/replication factor means the broker default)."""
    body = {
        "topics": [{
            "name": name,
            "num_partitions": partitions,
            "replication_factor": replication_factor,
            "assignments": [],
            "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
        }],
        "timeout_ms": timeout_ms,
        "validate_only": validate_only,
    }
    resp = client.request(CREATE_TOPICS, body, client.controller())
    for r in resp.topics:
        if r.name == name:
            check(r.error_code, r.get("error_message"))


def delete_topic(client: KafkaClient, name: str, *, timeout_ms: int = 30000) -> None:
    """Delete one topic by name."""
    body = {"topics": [{"name": name}], "topic_names": [name], "timeout_ms": timeout_ms}
    resp = client.request(DELETE_TOPICS, body, client.controller())
    for r in resp.responses:
        if r.name == name:
            check(r.error_code, r.get("error_message"))


def create_partitions(client: KafkaClient, name: str, count: int, *, timeout_ms: int = 30000) -> None:
    """Grow topic ``name`` to ``count`` partitions in total."""
    body = {"topics": [{"name": name, "count": count, "assignments": None}],
            "timeout_ms": timeout_ms, "validate_only": False}
    resp = client.request(CREATE_PARTITIONS, body, client.controller())
    for r in resp.results:
        if r.name == name:
            check(r.error_code, r.error_message)


def describe_topic_configs(client: KafkaClient, name: str) -> list[ConfigEntry]:
    """Every config of topic ``name`` with its value and source."""
    body = {"resources": [{"resource_type": RESOURCE_TOPIC, "resource_name": name,
                           "configuration_keys": None}],
            "include_synonyms": False, "include_documentation": False}
    resp = client.request(DESCRIBE_CONFIGS, body)
    for r in resp.results:
        if r.resource_name != name:
            continue
        check(r.error_code, r.error_message)
        out = []
        for c in r.configs:
            source = c.get("config_source")
            if source is None:
                source = SOURCE_DEFAULT if c.get("is_default") else SOURCE_DYNAMIC_TOPIC
            out.append(ConfigEntry(c.name, c.value, c.read_only, source == SOURCE_DEFAULT,
                                   c.is_sensitive, source))
        return out
    raise KafkaError(UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")


def topic_overrides(client: KafkaClient, name: str) -> dict[str, str | None]:
    """The configs set on topic ``name`` itself (what kafka-topics.sh shows as ``Configs:``)."""
    return {c.name: (None if c.is_sensitive else c.value)
            for c in describe_topic_configs(client, name) if c.source == SOURCE_DYNAMIC_TOPIC}
