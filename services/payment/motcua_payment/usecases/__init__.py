"""The payment service's use cases, grouped by who asks: the dossier service's events
(:mod:`.dossier_events`), API callers (:mod:`.api`), gateway callbacks (:mod:`.callbacks`) and
the timers (:mod:`.jobs`); the state changes they share are :mod:`.moves`.

Each use case takes the service's dependencies (:class:`.ports.Ports`) as its first argument:
``service.py`` wires them and delegates, the decisions stay in ``domain/``.
"""
