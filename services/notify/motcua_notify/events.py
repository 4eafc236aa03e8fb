"""Topic and CloudEvents type names notify consumes and publishes: spelled once, used everywhere.

Consumed: the dossier service's events (protos/motcua/dossier/v1/events.proto) and the payment
service's (protos/motcua/payment/v1/events.proto). Published: ``SENT``, ``DELIVERED`` and
``FAILED`` on :data:`TOPIC` (protos/motcua/notify/v1/events.proto), key = dossier code.
"""

# -- published --------------------------------------------------------------------------------
TOPIC = "motcua.notify.v1"
SOURCE = "/motcua/notify"
_PREFIX = "vn.motcua.notify."
SENT = _PREFIX + "sent.v1"
DELIVERED = _PREFIX + "delivered.v1"
FAILED = _PREFIX + "failed.v1"

# -- consumed: dossier ------------------------------------------------------------------------
DOSSIER_TOPIC = "motcua.dossier.v1"
_DOSSIER = "vn.motcua.dossier."
DOSSIER_SUBMITTED = _DOSSIER + "submitted.v1"  # DossierSubmitted
DOSSIER_OVERDUE = _DOSSIER + "overdue.v1"  # DossierDeadline
# DossierStatusChanged, one type per workflow action
DOSSIER_RECEIVED = _DOSSIER + "received.v1"
DOSSIER_REJECTED = _DOSSIER + "rejected.v1"
DOSSIER_SUPPLEMENT_REQUESTED = _DOSSIER + "supplement_requested.v1"
DOSSIER_PAYMENT_REQUESTED = _DOSSIER + "payment_requested.v1"
DOSSIER_PROCESSED = _DOSSIER + "processed.v1"
DOSSIER_RESULT_RETURNED = _DOSSIER + "result_returned.v1"
DOSSIER_WITHDRAWN = _DOSSIER + "withdrawn.v1"
DOSSIER_STOPPED = _DOSSIER + "stopped.v1"

DOSSIER_STATUS_CHANGES = (
    DOSSIER_RECEIVED,
    DOSSIER_REJECTED,
    DOSSIER_SUPPLEMENT_REQUESTED,
    DOSSIER_PAYMENT_REQUESTED,
    DOSSIER_PROCESSED,
    DOSSIER_RESULT_RETURNED,
    DOSSIER_WITHDRAWN,
    DOSSIER_STOPPED,
)

# -- consumed: payment ------------------------------------------------------------------------
PAYMENT_TOPIC = "motcua.payment.v1"
_PAYMENT = "vn.motcua.payment."
PAYMENT_REQUESTED = _PAYMENT + "requested.v1"  # amount + pay link
PAYMENT_SUCCEEDED = _PAYMENT + "succeeded.v1"  # receipt number
