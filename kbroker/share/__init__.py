"""Share-partitions of KIP-932 share groups: in-flight record states, acquisition locks,
share sessions, and their durable state in ``__share_group_state``."""
