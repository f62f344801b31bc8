"""What handlers and the server share: the request context, the connection's session,
the services a handler may use, and the exception that closes a connection.

The server builds a :class:`RequestContext` per request and hands it to a handler; neither
side imports the other's modules for it, and nothing here knows the Broker class: any
object with the attributes of :class:`BrokerServices` will do (the Broker is one; a test
can build a smaller one).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio

from kbroker.clock import Clock
from kbroker.codec import Request
from kbroker.common import TopicPartition
from kbroker.config import BrokerConfig, ConfigHolder
from kbroker.groups import GroupCoordinator
from kbroker.groups.group_configs import GroupConfigs
from kbroker.groups.share_group import ShareGroupCoordinator
from kbroker.log.partition_log import PartitionLog
from kbroker.metadata.config_resources import ConfigScope
from kbroker.metadata.manager import MetadataManager
from kbroker.replica.manager import ReplicaManager
from kbroker.security.model import ANONYMOUS, AclOperation, Authorizer, ResourceType
from kbroker.security.quotas import QuotaManager
from kbroker.security.scram import CredentialStore
from kbroker.share.manager import SharePartitionManager
from kbroker.txn.coordinator import TransactionCoordinator
from kbroker.txn.producer_ids import ProducerIdManager

_ids = itertools.count(1)
T = TypeVar("T")
R = TypeVar("R")


def _bits(*ops: AclOperation) -> int:
    return sum(1 << op for op in ops)


_O = AclOperation
#: The operations each resource type supports (Kafka's authorized-operations bit fields,
#: reported whole when there is no authorizer).
ALL_OPERATIONS: dict[ResourceType, int] = {
    ResourceType.TOPIC: _bits(_O.READ, _O.WRITE, _O.CREATE, _O.DELETE, _O.ALTER, _O.DESCRIBE,
                              _O.DESCRIBE_CONFIGS, _O.ALTER_CONFIGS),
    ResourceType.GROUP: _bits(_O.READ, _O.DESCRIBE, _O.DELETE),
    ResourceType.CLUSTER: _bits(_O.CREATE, _O.ALTER, _O.DESCRIBE, _O.CLUSTER_ACTION, _O.DESCRIBE_CONFIGS,
                                _O.ALTER_CONFIGS, _O.IDEMPOTENT_WRITE),
    ResourceType.TRANSACTIONAL_ID: _bits(_O.WRITE, _O.DESCRIBE),
    ResourceType.DELEGATION_TOKEN: _bits(_O.DESCRIBE),
    ResourceType.USER: _bits(_O.CREATE_TOKENS, _O.DESCRIBE_TOKENS),
}


class CloseConnection(Exception):
    """The request cannot be answered; Kafka closes the connection in this case."""


class HostedLogs(Protocol):
    """The broker's log directories and the partition logs they hold (the LogManager), as
    DescribeLogDirs reads them."""

    @property
    def log_dirs(self) -> list[Path]: ...
    def all_logs(self) -> dict[TopicPartition, PartitionLog]: ...
    def log_dir_of(self, topic: str, partition: int) -> Path | None: ...


class BrokerServices(Protocol):
    """The parts of a broker that handlers use."""

    @property
    def node_id(self) -> int: ...
    @property
    def config(self) -> BrokerConfig: ...
    @property
    def configs(self) -> ConfigHolder: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def endpoints(self) -> Mapping[str, tuple[str, int]]: ...
    @property
    def metadata(self) -> MetadataManager: ...
    @property
    def replica_manager(self) -> ReplicaManager: ...
    @property
    def log_manager(self) -> HostedLogs: ...
    @property
    def groups(self) -> GroupCoordinator: ...
    @property
    def group_configs(self) -> GroupConfigs:
        """Per-group config overrides (the GROUP config resource)."""
        ...
    @property
    def share_groups(self) -> ShareGroupCoordinator:
        """Share group membership (KIP-932)."""
        ...
    @property
    def shares(self) -> SharePartitionManager:
        """Share-partitions and share sessions (KIP-932)."""
        ...
    @property
    def producer_ids(self) -> ProducerIdManager: ...
    @property
    def transactions(self) -> TransactionCoordinator: ...
    @property
    def client_quotas(self) -> QuotaManager:
        """Client quota configs and the rates measured against them."""
        ...
    @property
    def authorizer(self) -> Authorizer | None:
        """The ACL authorizer; None when ``authorizer.class.name`` is unset (everything is allowed)."""
        ...
    @property
    def credentials(self) -> CredentialStore:
        """Users' SCRAM credentials."""
        ...


@dataclass
class Session:
    """What the broker knows about one client connection, across its requests.

    ``principal`` is ``User:ANONYMOUS`` until the connection authenticates: SSL sets it from
    the client certificate, SASL from the login; ACL checks and quotas read it.
    ``authenticated`` is False on SASL listeners until a SASL exchange succeeds; only the
    requests Kafka allows before that are served meanwhile. ``sasl`` holds the SASL
    exchange's state (the connection's authenticator) on SASL listeners.
    """

    listener: str
    client_host: str
    client_port: int
    connection_id: int = field(default_factory=lambda: next(_ids))
    principal: str = ANONYMOUS
    authenticated: bool = True
    security_protocol: str = "PLAINTEXT"
    sasl: Any = None
    client_software_name: str | None = None
    client_software_version: str | None = None
    last_client_id: str | None = None
    #: Client quotas: how long (ms) the connection reads no request after the response just served.
    throttle_ms: int = 0


class DetachedBody(dict[str, Any]):
    """A response body built afresh, sharing no state the event loop may change.

    Dispatch encodes such a body in a worker thread, so that a request naming many
    thousands of items does not hold up the other connections while it is encoded.
    """


class EncodedBody(dict[str, Any]):
    """A response body that comes with its encoding (the body alone, without the response
    header): dispatch writes ``encoded`` behind the response header instead of encoding the
    body again. For responses the same for every client (ApiVersions'), built once and
    returned to every request: never modify one. Where the body must change (client quotas
    add a throttle time), dispatch encodes the body as any other."""

    __slots__ = ("encoded",)

    def __init__(self, body: Mapping[str, Any], encoded: bytes) -> None:
        super().__init__(body)
        self.encoded = encoded


#: Items a handler works through between two yields to the event loop, and the count from
#: which its response is a :class:`DetachedBody` encoded in a worker thread.
MANY = 1000


async def map_yielding(fn: Callable[[T], R], items: Sequence[T], chunk: int = MANY) -> list[R]:
    """``[fn(x) for x in items]``, letting other connections in after every ``chunk`` items."""
    if len(items) <= chunk:
        return [fn(x) for x in items]
    out: list[R] = []
    for start in range(0, len(items), chunk):
        out.extend(fn(x) for x in items[start : start + chunk])
        await anyio.sleep(0)
    return out


def response(count: int, **body: Any) -> dict[str, Any]:
    """A response body; a :class:`DetachedBody` (encoded off the loop) when it holds ``count`` >= MANY items."""
    return DetachedBody(body) if count >= MANY else dict(body)


@dataclass(frozen=True)
class RequestContext:
    """The broker's services, the connection's session and the request being served."""

    broker: BrokerServices
    session: Session
    request: Request

    @property
    def version(self) -> int:
        return self.request.api_version

    @property
    def client_id(self) -> str | None:
        return self.request.header.client_id

    def authorize(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        """Whether this connection's principal may do ``operation`` on the resource."""
        authorizer = self.broker.authorizer
        if authorizer is None:
            return True
        return authorizer.authorize(self.session.principal, self.session.client_host, operation,
                                    resource_type, name)

    def authorized_operations(self, resource_type: ResourceType, name: str) -> int:
        """The bit field of operations this connection's principal may do on the resource
        (every operation the resource type supports when no authorizer is configured)."""
        authorizer = self.broker.authorizer
        if authorizer is None:
            return ALL_OPERATIONS[resource_type]
        return authorizer.authorized_operations(self.session.principal, self.session.client_host,
                                                resource_type, name)

    @property
    def config_scope(self) -> ConfigScope:
        """What the config APIs (Describe/Alter/IncrementalAlterConfigs) work on."""
        return ConfigScope(self.broker.node_id, self.broker.configs, self.broker.metadata)
