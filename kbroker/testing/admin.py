"""What a test needs to set up and inspect a Kafka: topics, groups, offsets, and a reset.

:class:`KafkaAdmin` talks the Kafka protocol through kbroker's own client, so it works the
same against an embedded broker, a ``kbroker serve`` or any Apache Kafka.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping

from kbroker.client import admin as topic_admin
from kbroker.client import groups as group_admin
from kbroker.client.cluster import KafkaClient
from kbroker.client.data import list_offsets
from kbroker.client.errors import (
    GROUP_ID_NOT_FOUND,
    NON_EMPTY_GROUP,
    UNKNOWN_TOPIC_OR_PARTITION,
    KafkaError,
)
from kbroker.common import TopicPartition

#: Kafka's internal topics: a reset leaves them (Kafka refuses to delete some, and the
#: coordinators recreate them anyway).
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})
#: ListOffsets timestamps.
LATEST = -1
EARLIEST = -2
#: The longest topic name Kafka accepts.
MAX_TOPIC_NAME = 249
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def unique_topic_name(hint: str = "topic") -> str:
    """A legal topic name no other test uses: ``hint`` (made legal, ``.`` as ``-`` so it
    cannot collide with a ``_`` twin) and a random suffix."""
    base = _NOT_IN_NAME.sub("-", hint).strip("-") or "topic"
    suffix = uuid.uuid4().hex[:10]
    return f"{base[:MAX_TOPIC_NAME - len(suffix) - 1]}-{suffix}"


class ResetError(Exception):
    """:meth:`KafkaAdmin.reset` could not empty the broker (e.g. a group still has members)."""


class KafkaAdmin:
    """A small synchronous admin client for tests (a context manager; :meth:`close` it)."""

    def __init__(self, bootstrap_servers: str, *, timeout: float = 30.0, client_id: str = "kbroker-testing") -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client = KafkaClient(bootstrap_servers, client_id=client_id, timeout=timeout)

    def close(self) -> None:
        """Close the connections."""
        self.client.close()

    def __enter__(self) -> KafkaAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics ----------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None, *,
                     replication_factor: int = -1) -> str:
        """Create topic ``name`` and wait until every partition has a leader; returns the name.
        ``replication_factor`` -1 is the broker's default. Raises :class:`KafkaError` (e.g.
        TOPIC_ALREADY_EXISTS, INVALID_CONFIG)."""
        topic_admin.create_topic(self.client, name, partitions, replication_factor,
                                 {k: str(v) for k, v in (configs or {}).items()})
        self._wait_ready(name, self.client.timeout)
        return name

    def _wait_ready(self, name: str, timeout: float) -> None:
        """Until the metadata shows ``name`` with a leader for every partition: Kafka answers
        CreateTopics before every broker's metadata has the topic."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.topic(name)  # retries while leaders are elected
                return
            except KafkaError as e:
                if e.code != UNKNOWN_TOPIC_OR_PARTITION or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def delete_topic(self, name: str, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Delete topic ``name``; with ``wait``, until the metadata no longer lists it (Kafka
        deletes asynchronously: a new topic of that name could fail until then)."""
        topic_admin.delete_topic(self.client, name)
        if wait:
            self._wait_gone([name], timeout)

    def topics(self, *, internal: bool = False) -> list[str]:
        """The topics' names, sorted; internal ones only when asked."""
        md = self.client.metadata(None)
        return sorted(n for n, t in md.topics.items() if internal or not _internal(n, t.is_internal))

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (KafkaError UNKNOWN_TOPIC_OR_PARTITION if none)."""
        info = self.client.metadata([topic]).topic(topic)
        return len(info.partitions)

    def topic_configs(self, topic: str) -> dict[str, str | None]:
        """The configs set on ``topic`` itself (not the defaults)."""
        return topic_admin.topic_overrides(self.client, topic)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Each partition's next offset (its high watermark)."""
        return list_offsets(self.client, topic, dict.fromkeys(range(self.partitions(topic)), LATEST))

    def beginning_offsets(self, topic: str) -> dict[int, int]:
        """Each partition's log start offset."""
        return list_offsets(self.client, topic, dict.fromkeys(range(self.partitions(topic)), EARLIEST))

    # -- groups ----------------------------------------------------------------------

    def groups(self) -> list[str]:
        """Every group's id (consumer, classic, share), sorted."""
        return [g.group_id for g in group_admin.list_groups(self.client)]

    def describe_group(self, group_id: str) -> group_admin.GroupDescription:
        """State and members of ``group_id`` (state ``Dead`` when it does not exist)."""
        return group_admin.describe_group(self.client, group_id)

    def committed(self, group_id: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets (of ``topic`` only, when given)."""
        offsets = group_admin.fetch_offsets(self.client, group_id)
        return {tp: c.offset for tp, c in offsets.items() if topic is None or tp.topic == topic}

    def delete_groups(self, group_ids: Iterable[str]) -> None:
        """Delete groups that have no members; raises :class:`KafkaError` for the first that
        cannot be deleted (NON_EMPTY_GROUP while a member is in it). A missing group is fine."""
        for group_id, error in group_admin.delete_groups(self.client, list(group_ids)).items():
            if error is not None and error.code != GROUP_ID_NOT_FOUND:
                raise KafkaError(error.code, f"group {group_id!r}: {error.message}")

    # -- reset -----------------------------------------------------------------------

    def reset(self, timeout: float = 30.0) -> None:
        """Delete every group and every topic but the internal ones, and wait until the
        metadata lists none: the next test starts on an empty broker.

        A group with members cannot be deleted (as in Kafka): members that are closing get
        until ``timeout`` seconds to leave; after that :class:`ResetError` names the group and
        its members' client ids (a consumer the test did not close).
        """
        deadline = time.monotonic() + timeout
        while True:
            busy: list[str] = []
            for group_id, error in group_admin.delete_groups(self.client, self.groups()).items():
                if error is None or error.code == GROUP_ID_NOT_FOUND:
                    continue
                if error.code != NON_EMPTY_GROUP:
                    raise ResetError(f"cannot delete group {group_id!r}: {error}") from error
                busy.append(group_id)
            if not busy:
                break
            if time.monotonic() >= deadline:
                described = []
                for group_id in busy:
                    members = self.describe_group(group_id).members
                    described.append(f"{group_id!r} (members: {', '.join(m.client_id for m in members)})")
                raise ResetError("groups still have members (close their consumers first): "
                                 + "; ".join(described))
            time.sleep(0.1)
        names = self.topics()
        for name in names:
            try:
                topic_admin.delete_topic(self.client, name)
            except KafkaError as e:
                if e.code != UNKNOWN_TOPIC_OR_PARTITION:  # gone already is what we want
                    raise ResetError(f"cannot delete topic {name!r}: {e}") from e
        self._wait_gone(names, max(deadline - time.monotonic(), 1.0))

    def _wait_gone(self, names: list[str], timeout: float) -> None:
        if not names:
            return
        deadline = time.monotonic() + timeout
        while True:
            left = set(names) & set(self.client.metadata(None).topics)
            if not left:
                return
            if time.monotonic() >= deadline:
                raise ResetError(f"topics still listed {timeout:.0f} s after deletion: {sorted(left)}")
            time.sleep(0.05)


def _internal(name: str, flagged: bool) -> bool:
    return flagged or name in INTERNAL_TOPICS
