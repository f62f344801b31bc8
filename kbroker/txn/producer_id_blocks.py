"""Producer id blocks handed out cluster-wide through etcd (Kafka's ProducerIdControlManager).

The ``producer-ids`` key holds the first id of the next free block as JSON
(``{"broker": <id of the last taker>, "next_producer_id": <n>}``). A broker takes a block
with a compare-and-swap on the key's ``mod_revision`` (or on its absence, for the very
first block): the winner moves ``next_producer_id`` past its block, a loser gets the
fresh value back from the same transaction and tries again. Two brokers can therefore
never be handed overlapping blocks.
"""

from __future__ import annotations

import json
import logging

from kbroker.etcd.client import Compare, EtcdClient, KeyValue, Put, Range
from kbroker.metadata.cluster_state import ClusterKeys

log = logging.getLogger(__name__)

__all__ = ["EtcdProducerIdBlocks", "ProducerIdBlockError"]

#: Compare-and-swap attempts before giving up on one block (each loser saw a newer value).
MAX_ATTEMPTS = 100


class ProducerIdBlockError(Exception):
    """The ``producer-ids`` document is unreadable, or ids are exhausted, or the key was too contended."""


def _next_id(kv: KeyValue | None) -> int:
    if kv is None:
        return 0
    try:
        value = int(kv.json()["next_producer_id"])
    except (ValueError, KeyError, TypeError) as e:
        raise ProducerIdBlockError(f"malformed producer-ids document: {kv.value[:200]!r}") from e
    if value < 0:
        raise ProducerIdBlockError(f"negative next producer id {value}")
    return value


class EtcdProducerIdBlocks:
    """A :data:`kbroker.txn.producer_ids.BlockSource` backed by the cluster's ``producer-ids`` key."""

    def __init__(self, client: EtcdClient, keys: ClusterKeys, node_id: int) -> None:
        self.client = client
        self.key = keys.producer_ids
        self.node_id = node_id

    async def __call__(self, block_size: int) -> int:
        """Reserve ``block_size`` ids; the first of them."""
        if block_size <= 0:
            raise ValueError(f"block size must be positive, not {block_size}")
        kv = await self.client.get(self.key)
        for _ in range(MAX_ATTEMPTS):
            start = _next_id(kv)
            end = start + block_size
            if end > 2**63 - 1:
                raise ProducerIdBlockError("producer ids exhausted")
            guard = Compare.absent(self.key) if kv is None else Compare.mod_revision(self.key, kv.mod_revision)
            doc = json.dumps({"broker": self.node_id, "next_producer_id": end}, sort_keys=True).encode()
            result = await self.client.txn([guard], [Put(self.key, doc)], [Range(self.key)])
            if result.succeeded:
                log.info("broker %d took producer id block [%d, %d)", self.node_id, start, end)
                return start
            # Another broker took a block meanwhile: the failure branch read its value.
            found = result.ranges[0] if result.ranges else []
            kv = found[0] if found else None
        raise ProducerIdBlockError(f"no producer id block after {MAX_ATTEMPTS} contended attempts")
