"""A stand-in for testcontainers' ``KafkaContainer``: the same methods, an embedded kbroker
instead of a Docker container. A suite written for testcontainers switches by its import::

    from kbroker.testing import KafkaContainer   # was: from testcontainers.kafka import KafkaContainer

    with KafkaContainer() as kafka:
        bootstrap = kafka.get_bootstrap_server()

Builders that shape a Docker container (image, network, volumes, command) are accepted and
change nothing; ``with_env`` takes the broker configs the Confluent image reads from
``KAFKA_*`` variables (``KAFKA_NUM_PARTITIONS=3`` is ``num.partitions=3``) and kbroker's own
``KBROKER_*`` names.
"""

from __future__ import annotations

from typing import Any

from kbroker.config.broker import BROKER_CONFIGS, ENV_PREFIX, env_var_name
from kbroker.testing.embedded import BrokerThread

#: Variables the Confluent image reads that describe its container plumbing (listeners,
#: ZooKeeper, the KRaft quorum): an embedded broker has none of it.
_CONTAINER_ONLY = frozenset({
    "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_INTER_BROKER_LISTENER_NAME", "KAFKA_ZOOKEEPER_CONNECT", "KAFKA_PROCESS_ROLES",
    "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_BROKER_ID",
    "KAFKA_NODE_ID", "KAFKA_HEAP_OPTS", "KAFKA_JMX_PORT", "KAFKA_JMX_HOSTNAME", "KAFKA_OPTS",
    "KAFKA_LOG4J_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    "KAFKA_LOG_DIRS", "CLUSTER_ID",
})


def config_key_of_env(name: str) -> str | None:
    """The broker config a container environment variable sets, or None when it sets none.

    The Confluent image's convention: ``KAFKA_`` then the key in capitals with ``.`` as ``_``,
    ``_`` as ``__`` and ``-`` as ``___``; kbroker's ``KBROKER_`` variables use ``_`` for ``.``.
    """
    if name in _CONTAINER_ONLY:
        return None
    if name.startswith(ENV_PREFIX):
        known = {env_var_name(key): key for key in BROKER_CONFIGS}
        return known.get(name, name.removeprefix(ENV_PREFIX).lower().replace("_", "."))
    if not name.startswith("KAFKA_"):
        return None
    rest = name.removeprefix("KAFKA_").lower()
    return rest.replace("___", "\0").replace("__", "\1").replace("_", ".").replace("\0", "-").replace("\1", "_")


class KafkaContainer:
    """testcontainers' ``KafkaContainer`` with an embedded kbroker behind it.

    ``port`` is the "container" port (as in testcontainers, the broker is reached on another,
    free port: :meth:`get_bootstrap_server` says which) unless :meth:`with_bind_ports` fixes
    the host port.
    """

    def __init__(self, image: str = "confluentinc/cp-kafka:7.6.0", port: int = 9093,
                 wait_strategy_check_string: str = "", listener_name: str = "PLAINTEXT",
                 security_protocol: str = "PLAINTEXT", **kwargs: Any) -> None:
        if security_protocol != "PLAINTEXT":
            raise ValueError(f"security_protocol {security_protocol!r}: only PLAINTEXT is served here")
        self.image = image
        self.port = port
        self.listener_name = listener_name
        self.security_protocol = security_protocol
        self.kraft_enabled = False
        self.cluster_id = "MkU3OEVBNTcwNTJENDM2Qk"
        self.env: dict[str, str] = {}
        self.ports: dict[int, int | None] = {port: None}
        self._kwargs = kwargs
        # What testcontainers' KafkaContainer sets, that a test may count on.
        self._configs: dict[str, str] = {"group.initial.rebalance.delay.ms": "0"}
        self._broker: BrokerThread | None = None

    # -- builders ----------------------------------------------------------------------

    def with_kraft(self) -> KafkaContainer:
        """KRaft mode: kbroker has no ZooKeeper either way; recorded in ``kraft_enabled``."""
        self.kraft_enabled = True
        return self

    def with_cluster_id(self, cluster_id: str) -> KafkaContainer:
        """The cluster id the broker reports."""
        self.cluster_id = cluster_id
        self._configs["cluster.id"] = cluster_id
        return self

    def with_env(self, key: str, value: str) -> KafkaContainer:
        """An environment variable; ``KAFKA_*``/``KBROKER_*`` ones set broker configs."""
        self.env[key] = str(value)
        config_key = config_key_of_env(key)
        if config_key is not None:
            self._configs[config_key] = str(value)
        return self

    def with_envs(self, **variables: str) -> KafkaContainer:
        """Several :meth:`with_env` at once."""
        for key, value in variables.items():
            self.with_env(key, value)
        return self

    def with_bind_ports(self, container: int | str, host: int | str | None = None) -> KafkaContainer:
        """Serve the broker's port ``container`` on host port ``host`` (any free port if None)."""
        self.ports[int(container)] = None if host is None else int(host)
        return self

    def with_exposed_ports(self, *ports: int | str) -> KafkaContainer:
        """Accepted for compatibility: only the Kafka port is served."""
        for p in ports:
            self.ports.setdefault(int(p), None)
        return self

    def with_name(self, name: str) -> KafkaContainer:
        """Accepted for compatibility (a container's name)."""
        self._kwargs["name"] = name
        return self

    def with_command(self, command: str | list[str]) -> KafkaContainer:
        """Accepted for compatibility (the container's command)."""
        return self

    def with_kwargs(self, **kwargs: Any) -> KafkaContainer:
        """Accepted for compatibility (Docker API arguments)."""
        self._kwargs.update(kwargs)
        return self

    def with_volume_mapping(self, host: str, container: str, mode: str = "ro") -> KafkaContainer:
        """Accepted for compatibility (a volume)."""
        return self

    def with_network(self, network: Any) -> KafkaContainer:
        """Accepted for compatibility (a Docker network)."""
        return self

    def with_network_aliases(self, *aliases: str) -> KafkaContainer:
        """Accepted for compatibility (network aliases)."""
        return self

    def maybe_emulate_amd64(self) -> KafkaContainer:
        """Accepted for compatibility (no image to emulate)."""
        return self

    # -- life cycle --------------------------------------------------------------------

    def start(self, timeout: int = 30) -> KafkaContainer:
        """Start the broker (data in a temporary folder, removed by :meth:`stop`)."""
        if self._broker is not None:
            raise RuntimeError("the broker is already started")
        overrides = dict(self._configs)
        host_port = self.ports.get(self.port)
        overrides["listeners"] = f"{self.listener_name}://127.0.0.1:{host_port or 0}"
        if self.listener_name != "PLAINTEXT":
            overrides["listener.security.protocol.map"] = f"{self.listener_name}:PLAINTEXT"
            overrides["inter.broker.listener.name"] = self.listener_name
        broker = BrokerThread(None, overrides)
        self._broker = broker
        try:
            broker.start(float(timeout))
        except BaseException:
            self._broker = None
            raise
        return self

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Stop the broker and remove its data."""
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()

    def __enter__(self) -> KafkaContainer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where to connect ---------------------------------------------------------------

    def _running(self) -> BrokerThread:
        if self._broker is None:
            raise RuntimeError("the broker is not started (call start() or use `with`)")
        return self._broker

    def get_bootstrap_server(self) -> str:
        """``host:port`` for a client's ``bootstrap.servers``."""
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.port)}"

    def get_container_host_ip(self) -> str:
        """The host clients connect to."""
        self._running()
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        """The host port serving the broker's ``port``; only the Kafka port is served."""
        broker = self._running()
        if int(port) != self.port:
            raise ValueError(f"port {port} is not served (the Kafka port is {self.port})")
        return broker.port

    @property
    def broker(self) -> BrokerThread:
        """The embedded broker (its clock, faults, admin and reset), while started."""
        return self._running()
