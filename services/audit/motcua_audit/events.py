"""Topics the audit service consumes and the names it gives its own records: spelled once.

The audit log records every event of every motcua topic, known type or not. For the dossier
topic, the types below must parse as their documented payload (protos/motcua/dossier/v1/
events.proto), so garbage claiming to be a dossier event is dead-lettered rather than
recorded; the payload also names the actor. Other types, and the payment and notify topics,
are recorded by payload digest with the producing service (CloudEvents source) as actor.
"""

from __future__ import annotations

from google.protobuf.message import Message

from motcua.dossier.v1 import events_pb2 as dossier_events

DOSSIER_TOPIC = "motcua.dossier.v1"
PAYMENT_TOPIC = "motcua.payment.v1"
NOTIFY_TOPIC = "motcua.notify.v1"
CONSUMED_TOPICS = (DOSSIER_TOPIC, PAYMENT_TOPIC, NOTIFY_TOPIC)

_DOSSIER = "vn.motcua.dossier."
DOSSIER_SUBMITTED = _DOSSIER + "submitted.v1"
_DOSSIER_STATUS_CHANGES = (
    "received",
    "rejected",
    "payment_requested",
    "paid",
    "processing_started",
    "supplement_requested",
    "supplemented",
    "processed",
    "result_returned",
    "withdrawn",
    "stopped",
)
_DOSSIER_DEADLINES = ("due_soon", "overdue")

DOSSIER_PAYLOADS: dict[str, type[Message]] = {
    DOSSIER_SUBMITTED: dossier_events.DossierSubmitted,
    **{
        f"{_DOSSIER}{name}.v1": dossier_events.DossierStatusChanged
        for name in _DOSSIER_STATUS_CHANGES
    },
    **{f"{_DOSSIER}{name}.v1": dossier_events.DossierDeadline for name in _DOSSIER_DEADLINES},
    _DOSSIER + "payment_refused.v1": dossier_events.PaymentRefused,
}
"""Known dossier event types → the protobuf message their payload must parse as."""

# Direct records made over gRPC (RecordAccess).
ACCESS_TYPE = "vn.motcua.audit.access_recorded.v1"
ACCESS_SOURCE_PREFIX = "/motcua/audit/access/"
"""An access record's CloudEvents source is this prefix + the caller's token subject, so a
record id is unique per caller (retries by one caller dedupe; two callers never collide)."""
