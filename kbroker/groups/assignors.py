"""Server-side assignors of consumer groups (KIP-848): ``uniform`` and ``range``.

Both compute a target assignment, by topic id, from the members' subscriptions and the
subscribed topics' partition counts, as Kafka's UniformAssignor and RangeAssignor do:

- ``uniform`` spreads every partition so that member loads differ by at most one among
  the members able to take a partition, and is sticky: a member keeps what it has as long
  as the balance allows, so a member joining or leaving moves only the partitions it must.
- ``range`` gives each member of a topic's subscribers, in member id order, a contiguous
  range of that topic's partitions (the first ones one more when they do not divide).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: topic id -> partitions.
Assignment = dict[uuid.UUID, frozenset[int]]


@dataclass(frozen=True)
class MemberSpec:
    """What an assignor knows of a member."""

    subscribed: frozenset[uuid.UUID]
    #: The member's target assignment so far (stickiness).
    current: Mapping[uuid.UUID, frozenset[int]] = field(default_factory=dict)
    instance_id: str | None = None
    rack_id: str | None = None


class Assignor(Protocol):
    """A server-side assignor."""

    name: str

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
        """member id -> its target assignment; ``topics``: subscribed topic id -> partition count."""
        ...


def _freeze(out: Mapping[str, Mapping[uuid.UUID, set[int]]], members: Mapping[str, MemberSpec]) -> dict[str, Assignment]:
    return {m: {t: frozenset(ps) for t, ps in out.get(m, {}).items() if ps} for m in members}


class UniformAssignor:
    """Kafka's UniformAssignor: balanced and sticky, for homogeneous and heterogeneous subscriptions."""

    name = "uniform"

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
        """See :class:`Assignor`."""
        order = sorted(members)
        owned: dict[str, set[tuple[uuid.UUID, int]]] = {m: set() for m in order}
        taken: set[tuple[uuid.UUID, int]] = set()
        # 1. Keep what each member has and may still have.
        for m in order:
            spec = members[m]
            for t, ps in spec.current.items():
                if t not in spec.subscribed or t not in topics:
                    continue
                for p in ps:
                    if p < topics[t] and (t, p) not in taken:
                        owned[m].add((t, p))
                        taken.add((t, p))
        subscribers = {t: [m for m in order if t in members[m].subscribed] for t in topics}
        # 2. Homogeneous subscriptions: the loads are known in advance; members over their
        # share give back their highest partitions first.
        homogeneous = bool(order) and all(members[m].subscribed == members[order[0]].subscribed for m in order)
        if homogeneous:
            total = sum(n for t, n in topics.items() if subscribers[t])
            base, extra = divmod(total, len(order))
            by_load = sorted(order, key=lambda m: (-len(owned[m]), m))
            quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_load)}
            for m in order:
                while len(owned[m]) > quota[m]:
                    tp = max(owned[m])
                    owned[m].discard(tp)
                    taken.discard(tp)
        # 3. Each partition nobody has goes to its least loaded subscriber.
        for t in sorted(topics, key=str):
            subs = subscribers[t]
            if not subs:
                continue
            for p in range(topics[t]):
                if (t, p) not in taken:
                    m = min(subs, key=lambda s: (len(owned[s]), s))
                    owned[m].add((t, p))
                    taken.add((t, p))
        # 4. Heterogeneous subscriptions: move partitions from a member to a subscriber of
        # theirs at least two lighter until none can move (bounded: each move lowers the spread).
        # Homogeneous ones are balanced already by 2 and 3 (loads within one of each other),
        # and the pass costs partitions x members, for nothing, on every join or leave.
        for _ in range(0 if homogeneous else sum(topics.values()) * max(len(order), 1)):
            moved = False
            for m in sorted(order, key=lambda s: (-len(owned[s]), s)):
                for tp in sorted(owned[m], reverse=True):
                    lighter = [s for s in subscribers[tp[0]] if len(owned[s]) + 1 < len(owned[m])]
                    if lighter:
                        to = min(lighter, key=lambda s: (len(owned[s]), s))
                        owned[m].discard(tp)
                        owned[to].add(tp)
                        moved = True
                        break
                if moved:
                    break
            if not moved:
                break
        out: dict[str, dict[uuid.UUID, set[int]]] = {}
        for m, tps in owned.items():
            for t, p in tps:
                out.setdefault(m, {}).setdefault(t, set()).add(p)
        return _freeze(out, members)


class RangeAssignor:
    """Kafka's RangeAssignor: per topic, contiguous ranges to its subscribers in member id order."""

    name = "range"

    def assign(self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]) -> dict[str, Assignment]:
        """See :class:`Assignor`."""
        out: dict[str, dict[uuid.UUID, set[int]]] = {}
        for t, n in topics.items():
            # Static members sort by instance id so a restart keeps their ranges (as Kafka).
            subs = sorted((m for m in members if t in members[m].subscribed),
                          key=lambda m: (members[m].instance_id is None, members[m].instance_id or m, m))
            if not subs:
                continue
            base, extra = divmod(n, len(subs))
            start = 0
            for i, m in enumerate(subs):
                count = base + (1 if i < extra else 0)
                if count:
                    out.setdefault(m, {})[t] = set(range(start, start + count))
                start += count
        return _freeze(out, members)


#: Every assignor by name.
ASSIGNORS: dict[str, Assignor] = {a.name: a for a in (UniformAssignor(), RangeAssignor())}
