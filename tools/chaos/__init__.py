"""Fault injection against a local cluster: ``python -m tools.chaos`` (see :mod:`tools.chaos.run`)."""
