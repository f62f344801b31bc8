"""The scenarios of the matrix, in report order. ``fast`` ones make up ``--fast`` (CI).

``security`` scenarios run against a broker with TLS and SASL listeners (compat/security.py);
the others against a PLAINTEXT-only broker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    fast: bool = False
    timeout: float = 60.0
    security: bool = False


SCENARIOS: list[Scenario] = [
    Scenario("metadata", "metadata: broker and a 3-partition topic are listed", fast=True),
    Scenario("produce_acks0", "produce acks=0, read back"),
    Scenario("produce_acks1", "produce acks=1, read back", fast=True),
    Scenario("produce_acksall", "produce acks=all, read back"),
    Scenario("keys_partitioner", "keys + default partitioner: key→partition stable, read back", fast=True),
    Scenario("headers", "record headers (repeated keys, empty value) round-trip", fast=True),
    Scenario("null_values", "null value (tombstone) vs empty value round-trip", fast=True),
    Scenario("compression_gzip", "gzip-compressed batches round-trip", fast=True),
    Scenario("compression_snappy", "snappy-compressed batches round-trip", fast=True),
    Scenario("compression_lz4", "lz4-compressed batches round-trip", fast=True),
    Scenario("compression_zstd", "zstd-compressed batches round-trip", fast=True),
    Scenario("consume_assign", "consume by assignment from an explicit offset", fast=True),
    Scenario("consume_timestamp", "offsets for a timestamp, consume from there", fast=True),
    Scenario("group_range", "2-member group, range assignor", fast=True, timeout=90),
    Scenario("group_roundrobin", "2-member group, round-robin assignor", fast=True, timeout=90),
    Scenario("group_sticky", "2-member group, (eager) sticky assignor", timeout=90),
    Scenario("group_cooperative_sticky", "2-member group, cooperative-sticky assignor", timeout=90),
    Scenario("commit_resume", "commit offsets, close, resume in a new consumer", fast=True),
    Scenario("idempotent_producer", "idempotent producer (InitProducerId, sequence numbers)", fast=True),
    Scenario("transactions", "transactions: commit + abort, read_committed sees only committed"),
    Scenario("txn_abort_multi",
             "transaction over 5 partitions of 2 topics aborted, the next committed: read_committed sees only it",
             timeout=90),
    Scenario("txn_read_committed",
             "2 producers' interleaved transactions: read_committed stops at the LSO, sees exactly the committed",
             fast=True, timeout=90),
    Scenario("txn_read_uncommitted",
             "read_uncommitted sees committed, aborted and open transactions' records, never control records",
             timeout=90),
    Scenario("txn_send_offsets",
             "consume-transform-produce: offsets sent to the transaction commit with it, not after an abort",
             fast=True, timeout=90),
    Scenario("admin_topics", "admin: create and delete topics", fast=True),
    Scenario("admin_partitions", "admin: create partitions", fast=True),
    Scenario("admin_configs", "admin: describe and alter topic configs"),
    Scenario("admin_groups", "admin: list, describe and delete groups", fast=True),
    Scenario("large_messages", "~1 MB message near max.message.bytes accepted, over it rejected", fast=True),
    Scenario("many_partitions", "64-partition topic: produce to and consume from each", fast=True),
    Scenario("streams_wordcount_alos",
             "Kafka Streams word count (changelog store), at_least_once: killed, restarted, counts >= exact",
             timeout=150),
    Scenario("streams_wordcount_eos",
             "Kafka Streams word count (changelog store), exactly_once_v2: killed, restarted, counts exact",
             timeout=150),
    # Security (compat/security.py): topics are created over the PLAINTEXT listener; records are
    # produced and read back over the listener under test, as alice.
    Scenario("sec_sasl_plain", "SASL_PLAINTEXT, PLAIN: produce and consume", fast=True, security=True),
    Scenario("sec_sasl_scram_sha256", "SASL_PLAINTEXT, SCRAM-SHA-256: produce and consume", fast=True,
             security=True),
    Scenario("sec_sasl_scram_sha512", "SASL_PLAINTEXT, SCRAM-SHA-512: produce and consume", fast=True,
             security=True),
    Scenario("sec_sasl_oauthbearer", "SASL_PLAINTEXT, OAUTHBEARER (unsecured JWS token): produce and consume",
             fast=True, security=True),
    Scenario("sec_ssl", "SSL (client certificate requested, none given): produce and consume", fast=True,
             security=True),
    Scenario("sec_ssl_client_cert", "SSL requiring a client certificate, given: produce and consume", fast=True,
             security=True),
    Scenario("sec_sasl_ssl_plain", "SASL_SSL, PLAIN: produce and consume", fast=True, security=True),
    Scenario("sec_sasl_ssl_scram", "SASL_SSL, SCRAM-SHA-512: produce and consume", fast=True, security=True),
    Scenario("sec_wrong_password",
             "wrong password (PLAIN, SCRAM-SHA-256) fails with an authentication error; the right one then works",
             fast=True, security=True, timeout=120),
    Scenario("sec_unknown_user",
             "unknown user (PLAIN, SCRAM-SHA-512) fails with an authentication error; a known one then works",
             fast=True, security=True, timeout=120),
    Scenario("sec_oauthbearer_expired",
             "an expired OAUTHBEARER token fails with an authentication error; a valid one then works",
             fast=True, security=True, timeout=120),
    Scenario("sec_untrusted_cert",
             "client certificate from another CA, and none, refused where one is required; the trusted one works",
             fast=True, security=True, timeout=120),
]

BY_ID = {s.id: s for s in SCENARIOS}
