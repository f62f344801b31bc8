"""The log cleaner's core: compacting one partition log (Kafka's ``Cleaner``).

:mod:`~kbroker.log.cleaner.offset_map` holds the key-digest map, :mod:`~kbroker.log.cleaner.filter`
decides per batch and record what survives, :mod:`~kbroker.log.cleaner.clean` runs a pass over a
log (the heavy part as a picklable job a worker process can run) and
:mod:`~kbroker.log.cleaner.swap` is the crash-safe file protocol that swaps cleaned segments in.
Import from the modules: this package imports nothing so the log layer can use ``swap``.
"""
