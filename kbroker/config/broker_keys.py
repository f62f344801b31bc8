"""The broker config keys kbroker recognises, with Kafka's names, types and defaults.

The listener keys are read-only: Kafka can change them per broker at runtime, kbroker
binds its listeners once, so it refuses such a change rather than accept one it ignores.

Deliberate differences from Kafka's defaults, for a single-node local broker:
``listeners`` binds 127.0.0.1, ``log.dirs`` is ``./kbroker-data``, ``node.id`` is 1,
and the internal topics' replication factors are 1.
"""

from __future__ import annotations

from kbroker.config.listeners import check_ip_overrides
from kbroker.config.types import (
    INT_MAX,
    LONG_MAX,
    ConfigDef,
    ConfigType,
    UpdateMode,
    at_least,
    between,
    each_of,
    non_empty,
    one_of,
)

BOOL = ConfigType.BOOLEAN
STR = ConfigType.STRING
INT = ConfigType.INT
SHORT = ConfigType.SHORT
LONG = ConfigType.LONG
DOUBLE = ConfigType.DOUBLE
LIST = ConfigType.LIST
PASSWORD = ConfigType.PASSWORD
CLASS = ConfigType.CLASS
RO = UpdateMode.READ_ONLY
PB = UpdateMode.PER_BROKER
CW = UpdateMode.CLUSTER_WIDE

COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
CLEANUP_POLICIES = ("compact", "delete")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SSL_CLIENT_AUTH = ("none", "requested", "required")
KEYSTORE_TYPES = ("PEM", "PKCS12", "JKS")
#: The Kafka releases whose API versions ``emulate.version`` can advertise (the releases of
#: kbroker/server/data/kafka_api_versions.json).
EMULATED_RELEASES = ("2.8", "3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "4.0", "4.1")
#: Minimum segment size: the overhead of one v0 record, as in Kafka.
MIN_SEGMENT_BYTES = 14

# fmt: off
_DEFS: tuple[ConfigDef, ...] = (
    # --- node, cluster, network
    ConfigDef("node.id", INT, 1, "The id of this node.", (at_least(0),), RO),
    ConfigDef("broker.id", INT, None, "Alias of node.id; if both are set they must agree.", (at_least(0),), RO),
    ConfigDef("cluster.id", STR, None, "Cluster id; generated on first start and stored in the data directory when unset.", (non_empty,), RO),
    ConfigDef("listeners", LIST, ["PLAINTEXT://127.0.0.1:9092"], "Comma-separated NAME://host:port to listen on; an empty host binds all interfaces and advertises the host name, localhost binds 127.0.0.1 and ::1, port 0 picks a free port.", (non_empty,), RO),
    ConfigDef("advertised.listeners", LIST, None, "Listeners given to clients in metadata; defaults to listeners.", (), RO),
    ConfigDef("listener.security.protocol.map", LIST, ["SASL_SSL:SASL_SSL", "PLAINTEXT:PLAINTEXT", "SSL:SSL", "SASL_PLAINTEXT:SASL_PLAINTEXT"], "Maps listener names to security protocols (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); a listener named after a protocol needs no entry.", (), RO),
    ConfigDef("inter.broker.listener.name", STR, None, "Listener brokers use to reach each other; defaults to the one of security.inter.broker.protocol.", (), RO),
    ConfigDef("security.inter.broker.protocol", STR, "PLAINTEXT", "Security protocol brokers use to reach each other, when inter.broker.listener.name is unset.", (one_of(*SECURITY_PROTOCOLS),), RO),
    ConfigDef("socket.request.max.bytes", INT, 104857600, "Largest request the broker accepts, in bytes.", (at_least(1),), RO),
    ConfigDef("message.max.bytes", INT, 1048588, "Largest record batch size allowed (topic: max.message.bytes).", (at_least(0),), CW),
    # --- connection limits
    ConfigDef("max.connections", INT, INT_MAX, "Connections the broker keeps open at most; at the limit it stops accepting until one closes.", (at_least(0),), CW),
    ConfigDef("max.connections.per.ip", INT, INT_MAX, "Connections one client address may have open; more are closed at once.", (at_least(0),), CW),
    ConfigDef("max.connections.per.ip.overrides", STR, "", "Per-address exceptions to max.connections.per.ip, as host:count,host:count.", (check_ip_overrides,), CW),
    ConfigDef("queued.max.request.bytes", LONG, 104857600, "Request bytes buffered over all connections before the broker stops reading from sockets; -1 is unbounded (Kafka's default).", (), RO),
    ConfigDef("connections.max.idle.ms", LONG, 600000, "Connections with no request bytes arriving for this long are closed, half-sent requests included.", (at_least(1),), RO),
    # --- TLS (every ssl.* and sasl.* key may be set per listener as listener.name.<listener>.<key>)
    ConfigDef("ssl.keystore.type", STR, "JKS", "Format of the key store: PEM or PKCS12 (JKS, Kafka's default, needs a JVM and is refused).", (one_of(*KEYSTORE_TYPES),), RO),
    ConfigDef("ssl.keystore.location", STR, None, "Path of the key store: the server's certificate chain and private key.", (), RO),
    ConfigDef("ssl.keystore.password", PASSWORD, None, "Password of the key store file (PKCS12; for PEM, of the encrypted key when ssl.key.password is unset).", (), RO, True),
    ConfigDef("ssl.key.password", PASSWORD, None, "Password of the private key in the key store (or of ssl.keystore.key).", (), RO, True),
    ConfigDef("ssl.keystore.certificate.chain", PASSWORD, None, "The server's certificate chain inline, as PEM (with ssl.keystore.type=PEM).", (), RO, True),
    ConfigDef("ssl.keystore.key", PASSWORD, None, "The server's private key inline, as PEM (PKCS#8, optionally encrypted with ssl.key.password).", (), RO, True),
    ConfigDef("ssl.truststore.type", STR, "JKS", "Format of the trust store: PEM or PKCS12.", (one_of(*KEYSTORE_TYPES),), RO),
    ConfigDef("ssl.truststore.location", STR, None, "Path of the trust store: the CA certificates client certificates are checked against.", (), RO),
    ConfigDef("ssl.truststore.password", PASSWORD, None, "Password of the trust store file (PKCS12).", (), RO, True),
    ConfigDef("ssl.truststore.certificates", PASSWORD, None, "Trusted CA certificates inline, as PEM (with ssl.truststore.type=PEM).", (), RO, True),
    ConfigDef("ssl.client.auth", STR, "none", "Whether clients present a certificate: none, requested or required.", (one_of(*SSL_CLIENT_AUTH),), RO),
    ConfigDef("ssl.protocol", STR, "TLSv1.3", "Newest TLS protocol version offered.", (), RO),
    ConfigDef("ssl.enabled.protocols", LIST, ["TLSv1.2", "TLSv1.3"], "TLS protocol versions accepted.", (each_of("TLSv1.2", "TLSv1.3"),), RO),
    ConfigDef("ssl.cipher.suites", LIST, [], "Cipher suites allowed (OpenSSL or IANA names); empty allows the defaults.", (), RO),
    ConfigDef("ssl.principal.mapping.rules", STR, "DEFAULT", "Rules mapping a client certificate's distinguished name to a user name (Kafka's RULE:pattern/replacement/[LU] syntax).", (), RO),
    ConfigDef("ssl.endpoint.identification.algorithm", STR, "https", "Host name verification of the peer's certificate, for connections this broker opens.", (), RO),
    # --- SASL
    ConfigDef("sasl.enabled.mechanisms", LIST, ["GSSAPI"], "SASL mechanisms offered on SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (GSSAPI, Kafka's default, needs Kerberos and is refused).", (), RO),
    ConfigDef("sasl.mechanism.inter.broker.protocol", STR, "GSSAPI", "SASL mechanism brokers use to reach each other.", (), RO),
    ConfigDef("sasl.jaas.config", PASSWORD, None, "JAAS login module configuration; on the broker, set it per listener and mechanism (listener.name.<l>.<mechanism>.sasl.jaas.config).", (), RO, True),
    ConfigDef("sasl.server.callback.handler.class", CLASS, None, "Custom server callback handler (Java classes cannot be loaded; refused when set).", (), RO),
    ConfigDef("connections.max.reauth.ms", LONG, 0, "Longest a SASL session lasts before the client must re-authenticate (KIP-368); 0 never expires.", (at_least(0),), RO),
    ConfigDef("connection.failed.authentication.delay.ms", INT, 100, "Delay before a connection whose authentication failed is closed.", (at_least(0),), RO),
    # Kafka's Kerberos (GSSAPI) keys: kbroker has no Kerberos (GSSAPI is refused), so they have no
    # effect, but they are Kafka's dynamic per-broker keys and admin tools set them (librdkafka's
    # 0081_admin alters sasl.kerberos.min.time.before.relogin).
    ConfigDef("sasl.kerberos.service.name", STR, None, "Kerberos principal name Kafka runs as (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.kerberos.kinit.cmd", STR, "/usr/bin/kinit", "Kerberos kinit command path (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.kerberos.ticket.renew.window.factor", DOUBLE, 0.8, "Share of a ticket's lifetime before it is renewed (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.kerberos.ticket.renew.jitter", DOUBLE, 0.05, "Random jitter added to the renewal time (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.kerberos.min.time.before.relogin", LONG, 60000, "Login thread sleep time between refresh attempts (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.kerberos.principal.to.local.rules", LIST, ["DEFAULT"], "Rules mapping principal names to short names (no effect: kbroker has no Kerberos).", (), PB),
    ConfigDef("sasl.server.max.receive.size", INT, 524288, "Largest frame, in bytes, a SASL listener reads from a client before it has authenticated; a larger one closes the connection.", (at_least(1),), RO),
    ConfigDef("principal.builder.class", CLASS, "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder", "Builds the principal of a connection; only Kafka's default builder is available.", (), RO),
    # --- authorization
    ConfigDef("authorizer.class.name", STR, "", "Authorizer class; org.apache.kafka.metadata.authorizer.StandardAuthorizer (or kafka.security.authorizer.AclAuthorizer) turns on ACLs.", (), RO),
    # Sensitive, as Kafka shows it (an authorizer key, unknown to its broker config: value hidden).
    ConfigDef("super.users", STR, None, "Principals allowed everything whatever the ACLs, separated by semicolons (User:admin;User:ops).", (), RO, True),
    ConfigDef("allow.everyone.if.no.acl.found", BOOL, False, "Allow an operation on a resource no ACL matches.", (), RO),
    # --- quotas
    ConfigDef("quota.window.num", INT, 11, "Samples kept for client quotas.", (at_least(1),), RO),
    ConfigDef("quota.window.size.seconds", INT, 1, "Time span of each client quota sample.", (at_least(1),), RO),
    ConfigDef("controller.quota.window.num", INT, 11, "Samples kept for controller mutation quotas.", (at_least(1),), RO),
    ConfigDef("controller.quota.window.size.seconds", INT, 1, "Time span of each controller mutation quota sample.", (at_least(1),), RO),
    ConfigDef("max.connection.creation.rate", INT, INT_MAX, "New connections accepted per second at most, over all listeners.", (at_least(0),), CW),
    # --- log storage
    ConfigDef("log.dirs", LIST, None, "Comma-separated data directories; overrides log.dir.", (non_empty,), RO),
    ConfigDef("log.dir", STR, "./kbroker-data", "Data directory, used when log.dirs is unset.", (non_empty,), RO),
    ConfigDef("num.partitions", INT, 1, "Partitions of an auto-created topic.", (at_least(1),), RO),
    ConfigDef("default.replication.factor", INT, 1, "Replication factor of an auto-created topic.", (at_least(1),), RO),
    ConfigDef("auto.create.topics.enable", BOOL, True, "Create a topic when a client asks for metadata of or produces to an unknown one.", (), RO),
    ConfigDef("delete.topic.enable", BOOL, True, "Allow DeleteTopics.", (), RO),
    ConfigDef("log.segment.bytes", INT, 1073741824, "Size at which a segment file is rolled (topic: segment.bytes).", (at_least(MIN_SEGMENT_BYTES),), CW),
    ConfigDef("log.roll.ms", LONG, None, "Time after which a segment is rolled; overrides log.roll.hours (topic: segment.ms).", (at_least(1),), CW),
    ConfigDef("log.roll.hours", INT, 168, "Time after which a segment is rolled, in hours.", (at_least(1),), RO),
    ConfigDef("log.roll.jitter.ms", LONG, None, "Maximum random jitter subtracted from the roll time; overrides log.roll.jitter.hours (topic: segment.jitter.ms).", (at_least(0),), CW),
    ConfigDef("log.roll.jitter.hours", INT, 0, "Maximum random roll jitter, in hours.", (at_least(0),), RO),
    ConfigDef("log.index.interval.bytes", INT, 4096, "Bytes of records between offset-index entries (topic: index.interval.bytes).", (at_least(0),), CW),
    ConfigDef("log.index.size.max.bytes", INT, 10485760, "Maximum size of an offset index file (topic: segment.index.bytes).", (at_least(4),), CW),
    ConfigDef("log.flush.interval.messages", LONG, LONG_MAX, "Records appended before a forced fsync; the default never forces one (topic: flush.messages).", (at_least(1),), CW),
    ConfigDef("log.flush.interval.ms", LONG, None, "Milliseconds a record may stay unflushed; unset means never force (topic: flush.ms).", (at_least(0),), CW),
    ConfigDef("log.preallocate", BOOL, False, "Preallocate segment files (topic: preallocate).", (), CW),
    ConfigDef("log.segment.delete.delay.ms", LONG, 60000, "Delay before a deleted segment's files are removed (topic: file.delete.delay.ms).", (at_least(0),), CW),
    # --- retention and cleaning
    ConfigDef("log.retention.ms", LONG, None, "Time to keep a segment; -1 keeps forever; overrides minutes and hours (topic: retention.ms).", (), CW),
    ConfigDef("log.retention.minutes", INT, None, "Time to keep a segment, in minutes; overrides hours.", (), RO),
    ConfigDef("log.retention.hours", INT, 168, "Time to keep a segment, in hours.", (), RO),
    ConfigDef("log.retention.bytes", LONG, -1, "Partition size above which old segments are deleted; -1 is unlimited (topic: retention.bytes).", (), CW),
    ConfigDef("log.retention.check.interval.ms", LONG, 300000, "How often retention is checked.", (at_least(1),), RO),
    ConfigDef("log.local.retention.ms", LONG, -2, "Local retention time for tiered topics; -2 follows retention.ms (topic: local.retention.ms).", (at_least(-2),), CW),
    ConfigDef("log.local.retention.bytes", LONG, -2, "Local retention size for tiered topics; -2 follows retention.bytes (topic: local.retention.bytes).", (at_least(-2),), CW),
    ConfigDef("log.cleanup.policy", LIST, ["delete"], "delete and/or compact (topic: cleanup.policy).", (each_of(*CLEANUP_POLICIES),), CW),
    ConfigDef("log.cleaner.delete.retention.ms", LONG, 86400000, "How long delete tombstones are kept in compacted topics (topic: delete.retention.ms).", (at_least(0),), CW),
    ConfigDef("log.cleaner.min.compaction.lag.ms", LONG, 0, "Minimum age of a record before compaction (topic: min.compaction.lag.ms).", (at_least(0),), CW),
    ConfigDef("log.cleaner.max.compaction.lag.ms", LONG, LONG_MAX, "Maximum age of a record before it is eligible for compaction (topic: max.compaction.lag.ms).", (at_least(1),), CW),
    ConfigDef("log.cleaner.min.cleanable.ratio", DOUBLE, 0.5, "Dirty ratio at which a log is compacted (topic: min.cleanable.dirty.ratio).", (between(0, 1),), CW),
    ConfigDef("log.cleaner.enable", BOOL, True, "Run the log cleaner, which compacts topics with cleanup.policy=compact (__consumer_offsets among them).", (), RO),
    ConfigDef("log.cleaner.threads", INT, 1, "Threads cleaning logs (each cleans one log at a time).", (at_least(0),), CW),
    ConfigDef("log.cleaner.backoff.ms", LONG, 15000, "Sleep of a cleaner thread when no log needs cleaning.", (at_least(0),), CW),
    ConfigDef("log.cleaner.dedupe.buffer.size", LONG, 134217728, "Memory for the key-to-offset maps of all cleaner threads, in bytes.", (at_least(0),), CW),
    ConfigDef("log.cleaner.io.buffer.size", INT, 524288, "Read and write buffer memory of all cleaner threads, in bytes.", (at_least(0),), CW),
    ConfigDef("log.cleaner.io.buffer.load.factor", DOUBLE, 0.9, "How full the cleaner's key map may get.", (), CW),
    ConfigDef("log.cleaner.io.max.bytes.per.second", DOUBLE, 1.7976931348623157e308, "Cleaner I/O (read plus write) limit, in bytes per second.", (), CW),
    # --- record format
    ConfigDef("log.message.timestamp.type", STR, "CreateTime", "CreateTime or LogAppendTime (topic: message.timestamp.type).", (one_of(*TIMESTAMP_TYPES),), CW),
    ConfigDef("log.message.timestamp.before.max.ms", LONG, LONG_MAX, "How far a CreateTime timestamp may lie in the past (topic: message.timestamp.before.max.ms).", (at_least(0),), CW),
    ConfigDef("log.message.timestamp.after.max.ms", LONG, 3600000, "How far a CreateTime timestamp may lie in the future (topic: message.timestamp.after.max.ms).", (at_least(0),), CW),
    ConfigDef("compression.type", STR, "producer", "Compression of stored batches; producer keeps the producer's (topic: compression.type).", (one_of(*COMPRESSION_TYPES),), CW),
    ConfigDef("compression.gzip.level", INT, -1, "gzip level when compression.type is gzip; -1 is the codec default.", (between(1, 9, -1),), CW),
    ConfigDef("compression.lz4.level", INT, 9, "lz4 level when compression.type is lz4.", (between(1, 17),), CW),
    ConfigDef("compression.zstd.level", INT, 3, "zstd level when compression.type is zstd.", (between(-131072, 22),), CW),
    # --- replication (single node: reported, and validated, for clients)
    ConfigDef("min.insync.replicas", INT, 1, "Minimum in-sync replicas for acks=all (topic: min.insync.replicas).", (at_least(1),), CW),
    ConfigDef("unclean.leader.election.enable", BOOL, False, "Allow an out-of-sync replica to become leader (topic: unclean.leader.election.enable).", (), CW),
    # --- cluster: several brokers coordinated through etcd
    ConfigDef("etcd.endpoints", LIST, None, "etcd client URLs (http://host:port, comma-separated) of the cluster's coordination service; unset, the broker runs alone, without etcd.", (), RO),
    ConfigDef("etcd.prefix", STR, None, "etcd key prefix of the cluster's metadata; defaults to /kbroker/<cluster.id>/.", (non_empty,), RO),
    ConfigDef("broker.rack", STR, None, "Rack of this broker: replicas are spread over racks, and consumers with client.rack fetch from their rack.", (), RO),
    ConfigDef("broker.session.timeout.ms", INT, 9000, "A broker whose etcd lease is not renewed for this long is dead to the cluster (its leaderships move); it stops acknowledging replicated writes itself before then.", (at_least(2000),), RO),
    ConfigDef("broker.heartbeat.interval.ms", INT, 2000, "How often a broker renews its etcd lease.", (at_least(100),), RO),
    ConfigDef("controlled.shutdown.enable", BOOL, True, "On SIGTERM, move this broker's leaderships to other in-sync replicas before stopping.", (), RO),
    ConfigDef("controlled.shutdown.max.wait.ms", INT, 30000, "How long a controlled shutdown waits for its leaderships to move.", (at_least(0),), RO),
    ConfigDef("replica.lag.time.max.ms", LONG, 30000, "A follower that has not caught up with the leader's log end for this long leaves the ISR.", (at_least(1),), RO),
    ConfigDef("replica.fetch.wait.max.ms", INT, 500, "Longest wait of a follower's fetch for new data.", (at_least(0),), RO),
    ConfigDef("replica.fetch.min.bytes", INT, 1, "Bytes a follower's fetch waits for.", (at_least(1),), RO),
    ConfigDef("replica.fetch.max.bytes", INT, 1048576, "Bytes a follower asks of each partition per fetch (the first batch comes whole).", (at_least(0),), RO),
    ConfigDef("replica.fetch.backoff.ms", INT, 1000, "Pause of a follower's fetching from a leader after an error.", (at_least(0),), RO),
    ConfigDef("replica.socket.timeout.ms", INT, 30000, "Timeout of a follower's requests to its leader.", (at_least(1),), RO),
    ConfigDef("replica.high.watermark.checkpoint.interval.ms", LONG, 5000, "How often the high watermarks are written to replication-offset-checkpoint.", (at_least(1),), RO),
    ConfigDef("num.replica.fetchers", INT, 1, "Fetcher connections per source broker.", (at_least(1),), RO),
    ConfigDef("replica.selector.class", STR, None, "Chooses the replica a consumer reads from (KIP-392): org.apache.kafka.common.replica.RackAwareReplicaSelector picks one in the consumer's client.rack; unset, consumers read from leaders.", (), RO),
    ConfigDef("auto.leader.rebalance.enable", BOOL, True, "Move leadership back to each partition's preferred replica when it is in sync.", (), RO),
    ConfigDef("leader.imbalance.check.interval.seconds", LONG, 300, "How often the controller checks for partitions not led by their preferred replica.", (at_least(1),), RO),
    # --- fetch
    ConfigDef("fetch.max.bytes", INT, 57671680, "Largest fetch response returned to a consumer, in bytes (the first batch is returned whole even when larger).", (at_least(1024),), RO),
    ConfigDef("replica.fetch.response.max.bytes", INT, 10485760, "Largest fetch response returned to a follower replica, in bytes.", (at_least(0),), RO),
    ConfigDef("max.incremental.fetch.session.cache.slots", INT, 1000, "Most incremental fetch sessions (KIP-227) kept at once.", (at_least(0),), RO),
    # --- groups and offsets
    ConfigDef("offsets.topic.num.partitions", INT, 50, "Partitions of __consumer_offsets.", (at_least(1),), RO),
    ConfigDef("offsets.topic.replication.factor", SHORT, 1, "Replication factor of __consumer_offsets (Kafka's default is 3).", (at_least(1),), RO),
    ConfigDef("offsets.topic.segment.bytes", INT, 104857600, "Segment size of __consumer_offsets, in bytes (small segments compact sooner).", (at_least(1),), RO),
    ConfigDef("offsets.retention.minutes", INT, 10080, "How long committed offsets of an empty group are kept.", (at_least(1),), RO),
    ConfigDef("group.initial.rebalance.delay.ms", INT, 3000, "Delay before the first rebalance of a new group.", (at_least(0),), RO),
    ConfigDef("group.min.session.timeout.ms", INT, 6000, "Smallest session timeout a consumer may ask for.", (), RO),
    ConfigDef("group.max.session.timeout.ms", INT, 1800000, "Largest session timeout a consumer may ask for.", (), RO),
    ConfigDef("group.consumer.session.timeout.ms", INT, 45000, "Session timeout of consumer-protocol (KIP-848) group members: a member not heard from that long is removed.", (at_least(1),), RO),
    ConfigDef("group.consumer.min.session.timeout.ms", INT, 45000, "Smallest session timeout a consumer group may be given.", (at_least(1),), RO),
    ConfigDef("group.consumer.max.session.timeout.ms", INT, 60000, "Largest session timeout a consumer group may be given.", (at_least(1),), RO),
    ConfigDef("group.consumer.heartbeat.interval.ms", INT, 5000, "How often consumer-protocol group members heartbeat.", (at_least(1),), RO),
    ConfigDef("group.consumer.min.heartbeat.interval.ms", INT, 5000, "Smallest heartbeat interval a consumer group may be given.", (at_least(1),), RO),
    ConfigDef("group.consumer.max.heartbeat.interval.ms", INT, 15000, "Largest heartbeat interval a consumer group may be given.", (at_least(1),), RO),
    ConfigDef("group.consumer.assignors", LIST, ["uniform", "range"], "Server-side assignors of consumer groups (uniform, range); the first is the default.", (non_empty, each_of("uniform", "range")), RO),
    ConfigDef("group.consumer.max.size", INT, 2147483647, "Most members a consumer group may have.", (at_least(1),), RO),
    ConfigDef("group.consumer.migration.policy", STR, "disabled", "Online conversion of a group with members between the classic and consumer protocols. kbroker converts only empty groups (at their next join, as Kafka does whatever the policy), so only disabled is accepted; Kafka's default is bidirectional.", (one_of("disabled"),), RO),
    # --- share groups (KIP-932)
    ConfigDef("group.share.record.lock.duration.ms", INT, 30000, "How long a share consumer holds the records it fetched (the acquisition lock) before they are offered again.", (at_least(1000),), RO),
    ConfigDef("group.share.min.record.lock.duration.ms", INT, 15000, "Smallest share.record.lock.duration.ms a share group may be given.", (at_least(1000),), RO),
    ConfigDef("group.share.max.record.lock.duration.ms", INT, 60000, "Largest share.record.lock.duration.ms a share group may be given.", (at_least(1000),), RO),
    ConfigDef("group.share.delivery.count.limit", INT, 5, "Deliveries of a record to share consumers after which it is archived instead of offered again.", (at_least(2),), RO),
    ConfigDef("group.share.session.timeout.ms", INT, 45000, "How long a share group member may go without heartbeating before it is removed.", (at_least(1),), RO),
    ConfigDef("group.share.heartbeat.interval.ms", INT, 5000, "How often share group members are told to heartbeat.", (at_least(1),), RO),
    ConfigDef("group.share.partition.max.record.locks", INT, 2000, "Most records in flight (acquired or awaiting the start offset) per share-partition.", (at_least(100),), RO),
    ConfigDef("group.share.max.share.sessions", INT, 2000, "Most share sessions kept at once; a new one then replaces the least recently used.", (at_least(1),), RO),
    ConfigDef("group.share.max.size", INT, 200, "Most members of one share group.", (at_least(1),), RO),
    ConfigDef("share.coordinator.state.topic.num.partitions", INT, 50, "Partitions of __share_group_state.", (at_least(1),), RO),
    ConfigDef("share.coordinator.state.topic.replication.factor", SHORT, 1, "Replication factor of __share_group_state (Kafka's default is 3).", (at_least(1),), RO),
    ConfigDef("share.coordinator.state.topic.segment.bytes", INT, 104857600, "Segment size of __share_group_state, in bytes.", (at_least(1),), RO),
    # --- transactions
    ConfigDef("transaction.state.log.num.partitions", INT, 50, "Partitions of __transaction_state.", (at_least(1),), RO),
    ConfigDef("transaction.state.log.replication.factor", SHORT, 1, "Replication factor of __transaction_state (Kafka's default is 3).", (at_least(1),), RO),
    ConfigDef("transaction.state.log.segment.bytes", INT, 104857600, "Segment size of __transaction_state, in bytes.", (at_least(1),), RO),
    ConfigDef("transaction.state.log.min.isr", INT, 1, "min.insync.replicas of __transaction_state (Kafka's default is 2, for its 3 replicas).", (at_least(1),), RO),
    ConfigDef("transaction.max.timeout.ms", INT, 900000, "Largest transaction timeout a producer may ask for (its transaction.timeout.ms); larger ones get INVALID_TRANSACTION_TIMEOUT.", (at_least(1),), RO),
    ConfigDef("transaction.abort.timed.out.transaction.cleanup.interval.ms", INT, 10000, "How often transactions past their timeout are fenced and aborted.", (at_least(1),), RO),
    ConfigDef("transactional.id.expiration.ms", INT, 604800000, "How long a transactional id with no transaction going on is kept before it expires.", (at_least(1),), RO),
    ConfigDef("transaction.remove.expired.transaction.cleanup.interval.ms", INT, 3600000, "How often expired transactional ids are removed.", (at_least(1),), RO),
    ConfigDef("transaction.partition.verification.enable", BOOL, True, "Check that a transactional produce's partition was added to the transaction before appending (KIP-890).", (), CW),
    ConfigDef("producer.id.expiration.ms", INT, 86400000, "How long a producer id's state is kept after its last write.", (at_least(1),), CW),
    ConfigDef("producer.id.expiration.check.interval.ms", INT, 600000, "How often expired producer ids are removed.", (at_least(1),), RO),
    # --- development
    ConfigDef("emulate.version", STR, None, "Advertise (and hold clients to) the API versions of this Apache Kafka release, within what kbroker serves; unset: kbroker's own.", (one_of(*EMULATED_RELEASES),), RO),
    # --- fault injection (kbroker only)
    ConfigDef("faults.port", INT, None, "Port of the HTTP endpoint for fault rules (GET/POST/DELETE /faults), 0 for any free port; unset, there is none (rules can still be added from Python).", (between(0, 65535),), RO),
    ConfigDef("faults.host", STR, "127.0.0.1", "Address the fault rules' HTTP endpoint binds (faults.port).", (non_empty,), RO),
    # --- flight recorder
    ConfigDef("record.file", STR, None, "Flight recorder: append one JSON line per request served (client, API, version, latency, error codes, summarised bodies) to this file; `kbroker trace` reads it. Unset: nothing is recorded.", (non_empty,), RO),
    ConfigDef("record.payloads", BOOL, False, "Flight recorder: write the records of produce and fetch requests (keys, values, headers) instead of their byte counts.", (), RO),
    # --- request limits
    ConfigDef("max.partitions.per.request", INT, 10000, "New partitions one CreateTopics, CreatePartitions or Metadata auto-creation may add in all; larger requests are refused with POLICY_VIOLATION (Kafka's controller bounds one operation at 10000 records), auto-creation beyond it answers LEADER_NOT_AVAILABLE and is left to a later request.", (at_least(1),), RO),
    # --- metrics (kbroker's own: Kafka reports through JMX)
    ConfigDef("metrics.port", INT, None, "Port of the HTTP endpoint serving Prometheus metrics (/metrics) and a health check (/health); 0 picks a free port; unset, there is none.", (between(0, 65535),), RO),
    ConfigDef("metrics.host", STR, "127.0.0.1", "Address the metrics endpoint binds (metrics.port); an empty host binds every interface.", (), RO),
    # --- web console (kbroker only)
    ConfigDef("console.port", INT, None, "Port of the web console (topics, messages, consumer groups, live throughput and lag); 0 picks a free port; unset, there is none and none of its code is loaded.", (between(0, 65535),), RO),
    ConfigDef("console.host", STR, "127.0.0.1", "Address the web console binds (console.port); an empty host binds every interface.", (), RO),
    ConfigDef("console.read.only", BOOL, False, "Web console without actions: no topic creation or deletion, config change, offset reset or test message (they are refused with HTTP 403).", (), RO),
)
# fmt: on

#: Every recognised broker config key, by name, in documentation order.
BROKER_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _DEFS}

__all__ = [
    "BROKER_CONFIGS",
    "CLEANUP_POLICIES",
    "COMPRESSION_TYPES",
    "EMULATED_RELEASES",
    "INT_MAX",
    "KEYSTORE_TYPES",
    "LONG_MAX",
    "MIN_SEGMENT_BYTES",
    "SECURITY_PROTOCOLS",
    "SSL_CLIENT_AUTH",
    "TIMESTAMP_TYPES",
]
