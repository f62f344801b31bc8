"""Kafka record batches (magic 2): the header, CRC-32C, records, compression."""
