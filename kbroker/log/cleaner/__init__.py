"""The log cleaner: compaction of ``cleanup.policy=compact`` logs."""
