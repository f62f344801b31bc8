"""The network side: the per-connection loop and request dispatch (the listeners are bound in broker.py)."""
