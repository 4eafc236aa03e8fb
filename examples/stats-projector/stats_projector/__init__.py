"""Example motcua subscriber: on-time / late dossier statistics per agency, in its own SQLite.

Built only on the subscriber kit (``motcua_subscriber``): it consumes ``motcua.dossier.v1``,
keeps the newest snapshot of every dossier and answers the same question as the dossier
service's GetStatistics. See README.md.
"""
