"""A real Apache Kafka broker (pinned release, jars from Maven) to compare kbroker against.

``KafkaReference(workdir)`` starts a single combined broker+controller KRaft node on free loopback
ports; ``run_tool`` runs one of Kafka's command-line tools from the same classpath.
"""

from tools.kafka_reference.reference import (
    KAFKA_VERSION,
    KafkaReference,
    api_versions,
    java_classpath,
    lib_dir,
    resolve_jars,
    run_tool,
    tool_class,
    write_kafka_path,
)

__all__ = ["KAFKA_VERSION", "KafkaReference", "api_versions", "java_classpath", "lib_dir", "resolve_jars",
           "run_tool", "tool_class",
           "write_kafka_path"]
