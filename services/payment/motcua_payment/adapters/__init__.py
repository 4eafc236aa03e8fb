"""Adapters: database, gRPC API, the HTTP callback endpoint."""
