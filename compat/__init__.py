"""Compatibility matrix: real Kafka clients × Kafka features against kbroker (``python -m compat``)."""
