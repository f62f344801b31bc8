"""Broker benchmark: kbroker against a peer broker (Tansu), same workloads, same clients.

``python -m tools.bench [--quick] [--json FILE]`` starts kbroker (durable, on disk) and,
when its binary can be had, Tansu (in memory), runs produce/consume throughput, latency,
resource, start-up, idle-connection and many-partition workloads against each in turn
with confluent-kafka and kafka-python clients in separate processes, and prints a table
with kbroker's figures as ratios to Tansu's. See ``docs/performance.md``.
"""
