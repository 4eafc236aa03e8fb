"""motcua payment service: procedure fees for dossiers through gateway adapters.

Start at ``service.py`` (the Service class and its use cases); rules and the state table are
in ``domain/``; gateways (and the sandbox) in ``gateways/`` and ``sandbox/``; database, gRPC
and the HTTP callback endpoint in ``adapters/``.
"""
