"""motcua payment service: procedure fees for dossiers through gateway adapters.

Start at ``service.py`` (the Service class: wiring and entrypoints), which hands each use case
to ``usecases/``; rules, access policy and the state table are in ``domain/``; database, gRPC,
protobuf mapping, the HTTP callback endpoint and the gateways in ``adapters/``; the sandbox
gateway in ``sandbox/``.
"""
