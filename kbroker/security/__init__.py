"""Kafka's security model: principals, TLS, SASL mechanisms, ACLs and client quotas.

This package sits beside the log: it reads config and writes its own small files, and
knows nothing of handlers or the server, which call into it.
"""
