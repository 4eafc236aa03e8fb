"""Protobuf mapping, both ways: log entries, heads and keys to the API's messages, and the
consumed events (CloudEvents envelope and known dossier payloads) to log entries. The one
place the contracts' shapes are known; no rules live here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message

from motcua.audit.v1 import audit_pb2
from motcua.common.v1 import common_pb2
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_audit import events
from motcua_audit.adapters.db import StoredEntry
from motcua_audit.adapters.keys import PublishedKey
from motcua_audit.domain.documents import document_resource
from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.tree_head import SignedTreeHead, public_key_to_pem
from motcua_kit.actors import actor_to_proto, role_from_proto
from motcua_kit.db import aware
from motcua_kit.envelope import Event
from motcua_kit.proto import timestamp

_KIND = {EntryKind.EVENT: audit_pb2.ENTRY_KIND_EVENT, EntryKind.ACCESS: audit_pb2.ENTRY_KIND_ACCESS}


def actor_from_proto(actor: common_pb2.Actor) -> Actor:
    """An actor off the wire; a role the contracts do not name is ``Role.UNKNOWN``."""
    return Actor(actor.subject, Role(role_from_proto(actor.role)), actor.agency_code)


def head_to_proto(signed: SignedTreeHead) -> audit_pb2.SignedTreeHead:
    h = signed.head
    return audit_pb2.SignedTreeHead(
        tree_size=h.size,
        root_hash=h.root_hash,
        timestamp_ms=h.timestamp_ms,
        key_id=h.key_id,
        signature=signed.signature,
    )


def entry_to_proto(
    stored: StoredEntry, proof: audit_pb2.InclusionProof | None = None
) -> audit_pb2.AuditEntry:
    """Every field from the canonical bytes (the source of truth), plus the bytes themselves."""
    e = stored.entry
    return audit_pb2.AuditEntry(
        index=stored.index,
        event_id=e.event_id,
        event_type=e.event_type,
        event_source=e.event_source,
        event_time=timestamp(e.event_time),
        dossier_code=e.dossier_code,
        payload_sha256=e.payload_sha256.hex(),
        recorded_at=timestamp(e.recorded_at),
        topic=e.topic,
        kind=_KIND[e.kind],
        actor=actor_to_proto(e.actor),
        canonical_entry=stored.canonical,
        leaf_hash=stored.leaf_hash,
        purpose=e.purpose,
        resource=e.resource,
        citizen_ref=e.citizen_ref,
        event_subject=e.event_subject,
        inclusion_proof=proof,
    )


def public_keys_to_proto(keys: Iterable[PublishedKey]) -> list[audit_pb2.PublicKey]:
    return [
        audit_pb2.PublicKey(
            key_id=k.key_id,
            raw=k.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            pem=public_key_to_pem(k.key).decode("ascii"),
            current=k.current,
        )
        for k in keys
    ]


# -- consumed events -------------------------------------------------------------------------
def actor_of_event(event: Event, message: Message | None) -> Actor:
    """Who caused an event: named in known payloads, else the producing service (source)."""
    if isinstance(message, dossier_events.DossierStatusChanged) and message.HasField("actor"):
        return actor_from_proto(message.actor)
    if isinstance(message, dossier_events.DossierSubmitted) and message.dossier.HasField(
        "submitted_by"
    ):
        return actor_from_proto(message.dossier.submitted_by)
    return Actor(event.source, Role.SERVICE, "")


def payload_of(topic: str, event: Event) -> Message | None:
    """The parsed payload of a known dossier event type (EnvelopeError if it does not parse:
    poison), else None: audit records any event, known or not."""
    if topic != events.DOSSIER_TOPIC:
        return None
    payload_type = events.DOSSIER_PAYLOADS.get(event.type)
    return event.parse(payload_type) if payload_type is not None else None


def resource_of_event(message: Message | None) -> str:
    """What an event's entry names as its resource: an issued document's id and SHA-256
    (``document:<id>:sha256:<hex>``); empty for every other event, and for a document_issued
    payload whose id or hash is malformed (recorded all the same, without a resource)."""
    if not isinstance(message, dossier_events.DocumentIssued):
        return ""
    return document_resource(message.document.id, message.document.sha256) or ""


def event_entry(topic: str, event: Event, message: Message | None, recorded_at: datetime) -> Entry:
    """The log entry of a consumed event: its envelope's fields and its payload's digest."""
    return Entry(
        kind=EntryKind.EVENT,
        event_id=event.id,
        event_source=event.source,
        event_type=event.type,
        event_subject=event.subject,
        event_time=aware(event.time),
        topic=topic,
        actor=actor_of_event(event, message),
        dossier_code=event.subject,
        payload_sha256=hashlib.sha256(event.data).digest(),
        recorded_at=recorded_at,
        resource=resource_of_event(message),
    )
