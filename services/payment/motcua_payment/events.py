"""Topic and CloudEvents type names the payment service consumes and publishes.

Spelled once, used everywhere. Published payloads are ``motcua.payment.v1.PaymentEvent``
(protos/motcua/payment/v1/events.proto), key = dossier code. Consumed: the dossier service's
``submitted``, ``payment_requested``, ``paid``, ``withdrawn`` and ``stopped`` (the facts a
payment is bound to: ADR 0022), named here as strings so
this service does not depend on the dossier package.
"""

from motcua_payment.domain.states import PaymentState, RefundState

# -- published --------------------------------------------------------------------------------
TOPIC = "motcua.payment.v1"
SOURCE = "/motcua/payment"
_PREFIX = "vn.motcua.payment."
REQUESTED = _PREFIX + "requested.v1"
SUCCEEDED = _PREFIX + "succeeded.v1"
FAILED = _PREFIX + "failed.v1"
EXPIRED = _PREFIX + "expired.v1"
CANCELLED = _PREFIX + "cancelled.v1"
REFUND_SUCCEEDED = _PREFIX + "refund_succeeded.v1"
REFUND_FAILED = _PREFIX + "refund_failed.v1"

#: The event a payment entering a state publishes (CREATED publishes nothing: it is the
#: moment before the gateway issued the redirect, committed together with PENDING).
PAYMENT_EVENT_TYPES: dict[PaymentState, str] = {
    PaymentState.PENDING: REQUESTED,
    PaymentState.SUCCEEDED: SUCCEEDED,
    PaymentState.FAILED: FAILED,
    PaymentState.EXPIRED: EXPIRED,
    PaymentState.CANCELLED: CANCELLED,
}
REFUND_EVENT_TYPES: dict[RefundState, str] = {
    RefundState.SUCCEEDED: REFUND_SUCCEEDED,
    RefundState.FAILED: REFUND_FAILED,
}

# -- consumed ---------------------------------------------------------------------------------
DOSSIER_TOPIC = "motcua.dossier.v1"
DOSSIER_SUBMITTED = "vn.motcua.dossier.submitted.v1"
DOSSIER_PAYMENT_REQUESTED = "vn.motcua.dossier.payment_requested.v1"
DOSSIER_PAID = "vn.motcua.dossier.paid.v1"
DOSSIER_WITHDRAWN = "vn.motcua.dossier.withdrawn.v1"
DOSSIER_STOPPED = "vn.motcua.dossier.stopped.v1"
