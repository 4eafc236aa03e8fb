"""The dossier service's topic and event type names, from the registry's generated constants.

Payloads: ``SUBMITTED`` carries ``DossierSubmitted``; every action type carries
``DossierStatusChanged``; ``DUE_SOON`` and ``OVERDUE`` carry ``DossierDeadline``
(protos/motcua/dossier/v1/events.proto). The names are contracts/topics.yaml's, generated into
``motcua.topics`` by `make generate` (ADR 0078): nothing here spells one.
"""

from motcua import topics as t

TOPIC = t.DOSSIER_TOPIC
SOURCE = t.DOSSIER_SOURCE

SUBMITTED = t.DOSSIER_SUBMITTED
DUE_SOON = t.DOSSIER_DUE_SOON
STATUS_CHANGED = t.DOSSIER_STATUS_CHANGED  # an action of a custom workflow
OVERDUE = t.DOSSIER_OVERDUE
PAYMENT_REFUSED = t.DOSSIER_PAYMENT_REFUSED  # PaymentRefused: ADR 0022

# Workflow action → CloudEvents type of the DossierStatusChanged it emits.
ACTION_EVENTS = {
    "receive": t.DOSSIER_RECEIVED,
    "reject": t.DOSSIER_REJECTED,
    "request_payment": t.DOSSIER_PAYMENT_REQUESTED,
    "pay": t.DOSSIER_PAID,
    "process": t.DOSSIER_PROCESSING_STARTED,
    "request_supplement": t.DOSSIER_SUPPLEMENT_REQUESTED,
    "supplement": t.DOSSIER_SUPPLEMENTED,
    "approve": t.DOSSIER_PROCESSED,
    "return_result": t.DOSSIER_RESULT_RETURNED,
    "withdraw": t.DOSSIER_WITHDRAWN,
    "stop": t.DOSSIER_STOPPED,
}


def action_event(action: str) -> str:
    """The type of the DossierStatusChanged ``action`` emits (a custom workflow's action:
    STATUS_CHANGED); the catalogue writes it into each workflow's transition table."""
    return ACTION_EVENTS.get(action, STATUS_CHANGED)


# What the dossier service consumes from the payment service.
PAYMENT_TOPIC = t.PAYMENT_TOPIC
PAYMENT_REQUESTED = t.PAYMENT_REQUESTED
PAYMENT_SUCCEEDED = t.PAYMENT_SUCCEEDED

# A signed document was issued for the dossier (DocumentIssued, ADR 0086).
DOCUMENT_ISSUED = t.DOSSIER_DOCUMENT_ISSUED
