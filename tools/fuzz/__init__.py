"""A fuzzer for kbroker: mutated Kafka requests against the codec in-process, or a live broker.

``python -m tools.fuzz codec`` decodes mutated frames in-process; ``python -m tools.fuzz broker``
sends them to a broker subprocess over many pipelined connections. See README.md.
"""
