"""motcua notify service: tells citizens and subscribing systems what happened to a dossier.

Read top-down: ``service.py`` wires it (recording in the consumer, sending on a timer);
``domain/`` holds the rules (states, templates, pacing, planning); ``adapters/`` translate at
the edges (database, messages, channels, receipts, gRPC, wiring); ``data/`` holds the templates.
"""
