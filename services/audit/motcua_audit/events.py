"""Topics the audit service consumes and the names it gives its own records (``motcua.topics``).

The audit log records every event of every motcua topic, known type or not. For the dossier
topic, the types below must parse as their documented payload (protos/motcua/dossier/v1/
events.proto), so garbage claiming to be a dossier event is dead-lettered rather than
recorded; the payload also names the actor. Other types, and the payment and notify topics,
are recorded by payload digest with the producing service (CloudEvents source) as actor.
"""

from __future__ import annotations

from google.protobuf.message import Message

from motcua import topics as t
from motcua.dossier.v1 import events_pb2 as dossier_events

DOSSIER_TOPIC = t.DOSSIER_TOPIC
PAYMENT_TOPIC = t.PAYMENT_TOPIC
NOTIFY_TOPIC = t.NOTIFY_TOPIC
CONSUMED_TOPICS = (DOSSIER_TOPIC, PAYMENT_TOPIC, NOTIFY_TOPIC)

DOSSIER_SUBMITTED = t.DOSSIER_SUBMITTED
DOCUMENT_ISSUED = t.DOSSIER_DOCUMENT_ISSUED
"""Its entry's ``resource`` names the paper and its SHA-256 (:mod:`.domain.documents`)."""

DOSSIER_PAYLOADS: dict[str, type[Message]] = {
    t.DOSSIER_SUBMITTED: dossier_events.DossierSubmitted,
    **dict.fromkeys(
        (
            t.DOSSIER_RECEIVED,
            t.DOSSIER_REJECTED,
            t.DOSSIER_PAYMENT_REQUESTED,
            t.DOSSIER_PAID,
            t.DOSSIER_PROCESSING_STARTED,
            t.DOSSIER_SUPPLEMENT_REQUESTED,
            t.DOSSIER_SUPPLEMENTED,
            t.DOSSIER_PROCESSED,
            t.DOSSIER_RESULT_RETURNED,
            t.DOSSIER_WITHDRAWN,
            t.DOSSIER_STOPPED,
        ),
        dossier_events.DossierStatusChanged,
    ),
    t.DOSSIER_DUE_SOON: dossier_events.DossierDeadline,
    t.DOSSIER_OVERDUE: dossier_events.DossierDeadline,
    t.DOSSIER_PAYMENT_REFUSED: dossier_events.PaymentRefused,
    t.DOSSIER_DOCUMENT_ISSUED: dossier_events.DocumentIssued,
}
"""Known dossier event types → the protobuf message their payload must parse as."""

# Direct records made over gRPC (RecordAccess).
ACCESS_TYPE = t.AUDIT_ACCESS_RECORDED
ACCESS_SOURCE_PREFIX = t.AUDIT_ACCESS_RECORDED_SOURCE
"""An access record's CloudEvents source is this prefix + the caller's token subject, so a
record id is unique per caller (retries by one caller dedupe; two callers never collide)."""
