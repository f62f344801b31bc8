"""Wire-level differential check of kbroker against a real Apache Kafka.

``python -m compat.wirediff`` sends the same raw requests (every API and version kbroker
advertises, valid and malformed) to a kbroker and to a Kafka 4.1.1 (tools/kafka_reference),
compares the decoded answers field by field and writes compat/WIRE-DIFF.md.
"""
