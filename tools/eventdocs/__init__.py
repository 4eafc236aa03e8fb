"""The event catalogue generator: topic registry + protos → AsyncAPI 3.0 document and pages.

``python -m tools.eventdocs generate`` (``make generate``) writes ``docs/events/asyncapi.yaml``,
``docs/events/index.html``, ``docs/events/README.md`` and the kit's packaged copy of the
registry; ``python -m tools.eventdocs check`` (``make check-generated``) fails when any is stale,
when the document is not valid AsyncAPI 3.0, or when a service emits an undocumented type.
"""
