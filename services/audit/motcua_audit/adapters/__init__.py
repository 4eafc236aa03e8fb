"""Adapters of the audit service: database, gRPC."""
