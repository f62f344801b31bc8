"""Kafka's topic-name rules (``org.apache.kafka.common.internals.Topic``)."""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")

#: Kafka's internal topics; clients hide these unless asked.
CONSUMER_OFFSETS = "__consumer_offsets"
TRANSACTION_STATE = "__transaction_state"
SHARE_GROUP_STATE = "__share_group_state"


def invalid_reason(name: str | None) -> str | None:
    """Why ``name`` is not a legal topic name, in Kafka's words; None when it is legal."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > MAX_NAME_LENGTH:
        return (f"Topic name is illegal, it can't be longer than {MAX_NAME_LENGTH} characters, "
                f"topic name: {name}")
    if not _LEGAL.fullmatch(name):
        return (f'Topic name "{name}" is illegal, it contains a character other than '
                "ASCII alphanumerics, '.', '_' and '-'")
    return None


def collision_key(name: str) -> str:
    """Names equal under this key collide in metric names ('.' and '_' are interchangeable)."""
    return name.replace(".", "_")


INTERNAL_TOPICS = frozenset({CONSUMER_OFFSETS, TRANSACTION_STATE, SHARE_GROUP_STATE})


def is_internal(name: str) -> bool:
    """Topics the broker owns: exactly Kafka's ``Topic.isInternal`` set.

    Not every ``__`` name: clients may create and produce to their own ``__foo``
    topics, and the produce path refuses client writes to internal topics.
    """
    return name in INTERNAL_TOPICS
