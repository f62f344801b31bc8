"""Cluster metadata: brokers, topics, partitions with leaders, replicas, ISR and epochs."""

from kbroker.metadata.model import BrokerNode, PartitionInfo, TopicInfo

__all__ = ["BrokerNode", "PartitionInfo", "TopicInfo"]
