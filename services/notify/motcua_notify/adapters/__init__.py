"""Adapters at the edges of notify: database, inbound events, channels, receipts, gRPC."""
