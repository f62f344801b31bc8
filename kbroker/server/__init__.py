"""The network side: listener, per-connection loop, sessions and request dispatch."""
