"""Run librdkafka's own integration test suite against kbroker (``python -m compat.librdkafka``)."""
