"""Adapters at notify's edges: database, protobuf messages, channels, receipts, gRPC, wiring."""
