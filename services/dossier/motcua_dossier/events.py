"""The dossier service's topic and event type names: spelled once, used everywhere.

Payloads: ``SUBMITTED`` carries ``DossierSubmitted``; every action type carries
``DossierStatusChanged``; ``DUE_SOON`` and ``OVERDUE`` carry ``DossierDeadline``
(protos/motcua/dossier/v1/events.proto).
"""

TOPIC = "motcua.dossier.v1"
SOURCE = "/motcua/dossier"
_PREFIX = "vn.motcua.dossier."

SUBMITTED = _PREFIX + "submitted.v1"
DUE_SOON = _PREFIX + "due_soon.v1"
STATUS_CHANGED = _PREFIX + "status_changed.v1"  # an action of a custom workflow
OVERDUE = _PREFIX + "overdue.v1"
PAYMENT_REFUSED = _PREFIX + "payment_refused.v1"  # PaymentRefused: ADR 0022

# Workflow action → CloudEvents type of the DossierStatusChanged it emits.
ACTION_EVENTS = {
    "receive": _PREFIX + "received.v1",
    "reject": _PREFIX + "rejected.v1",
    "request_payment": _PREFIX + "payment_requested.v1",
    "pay": _PREFIX + "paid.v1",
    "process": _PREFIX + "processing_started.v1",
    "request_supplement": _PREFIX + "supplement_requested.v1",
    "supplement": _PREFIX + "supplemented.v1",
    "approve": _PREFIX + "processed.v1",
    "return_result": _PREFIX + "result_returned.v1",
    "withdraw": _PREFIX + "withdrawn.v1",
    "stop": _PREFIX + "stopped.v1",
}

# What the dossier service consumes from the payment service.
PAYMENT_TOPIC = "motcua.payment.v1"
PAYMENT_REQUESTED = "vn.motcua.payment.requested.v1"
PAYMENT_SUCCEEDED = "vn.motcua.payment.succeeded.v1"
