"""Broker benchmark: kbroker against two peer brokers (Tansu, Apache Kafka), same workloads,
same clients.

``python -m tools.bench [--quick] [--json FILE]`` starts kbroker (durable, on disk) and,
when they can be had, Tansu (in memory) and Apache Kafka (the reference JVM broker, on
disk), runs produce/consume throughput, latency, resource, start-up, idle-connection and
many-partition workloads against each in turn with confluent-kafka and kafka-python
clients in separate processes, and prints a table with the three side by side and
kbroker's figures as ratios to Tansu's and to Kafka's. See ``docs/performance.md``.
"""
