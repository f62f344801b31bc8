"""A small synchronous Kafka client built on kbroker's own codec (used by the CLI tools).

:class:`KafkaClient` holds one connection per broker and the cluster metadata; the
modules :mod:`~kbroker.client.admin`, :mod:`~kbroker.client.data` and
:mod:`~kbroker.client.groups` hold the operations, as functions taking the client.
"""

from kbroker.client.cluster import ClusterMetadata, KafkaClient, PartitionInfo, TopicInfo
from kbroker.client.connection import BrokerConnection
from kbroker.client.errors import BrokerConnectionError, ClientError, KafkaError

__all__ = [
    "BrokerConnection", "BrokerConnectionError", "ClientError", "ClusterMetadata", "KafkaClient",
    "KafkaError", "PartitionInfo", "TopicInfo",
]
