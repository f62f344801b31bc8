"""SASL on the broker side: the per-connection exchange and its mechanisms."""
