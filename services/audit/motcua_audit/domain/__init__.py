"""Pure domain core of the audit service's tamper-evident log (RFC 6962 / RFC 9162).

No I/O lives here: adapters (SQL node store, Kafka consumer, gRPC API, CLI) build on it.
"""
