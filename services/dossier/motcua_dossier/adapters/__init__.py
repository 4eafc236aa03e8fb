"""Adapters of the dossier service: database, gRPC. They translate; the rules live in domain."""
