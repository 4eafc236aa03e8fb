"""The audit service: a tamper-evident log of every motcua event and every direct access.

Use cases read top-down: ``record_*`` stage entries (Kafka handlers and ``RecordAccess``) and
the sequencer appends them to the log in batches (ADR 0046),
``sign_tree_head`` commits to the log's state, the proof queries answer auditors, and the
timer signs heads on schedule and re-verifies the stored log. The gRPC adapter
(``adapters/grpc_api.py``) translates at the edge; the domain (``domain/``) decides.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import ClassVar

from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua.dossier.v1 import events_pb2 as dossier_events
from motcua_audit import events
from motcua_audit.adapters import db
from motcua_audit.adapters.grpc_api import AuditApi, actor_from_proto
from motcua_audit.adapters.keys import KeyRing, LazyKeyRing
from motcua_audit.domain.access import AccessRecord, acting_actor
from motcua_audit.domain.entry import (
    EMPTY_PAYLOAD_SHA256,
    Actor,
    Entry,
    EntryKind,
    Role,
    citizen_commitment,
)
from motcua_audit.domain.merkle import verify_consistency
from motcua_audit.domain.self_check import (
    Check,
    Finding,
    check_block,
    next_block,
    plan_block,
)
from motcua_audit.domain.tree_head import SignedTreeHead, verify_tree_head
from motcua_audit.metrics import (
    APPEND_SECONDS,
    LOG_SIZE,
    TREE_HEAD_SIZE,
    TREE_HEAD_TIMESTAMP,
    TREE_HEADS_SIGNED,
    VERIFICATION_FAILURES,
)
from motcua_audit.sequencer import Sequencer, SequencingTimeout
from motcua_audit.settings import AuditSettings
from motcua_kit.auth import Principal
from motcua_kit.consumer import Handler
from motcua_kit.db import aware, on_commit, transaction
from motcua_kit.envelope import Event
from motcua_kit.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.service import Dependency, Service, ServiceContext, event_handler, timer

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
"""The timer's period; signing and self-checks run when their configured interval is due."""


def actor_of_event(event: Event, message: Message | None) -> Actor:
    """Who caused an event: named in known payloads, else the producing service (source)."""
    if isinstance(message, dossier_events.DossierStatusChanged) and message.HasField("actor"):
        return actor_from_proto(message.actor)
    if isinstance(message, dossier_events.DossierSubmitted) and message.dossier.HasField(
        "submitted_by"
    ):
        return actor_from_proto(message.dossier.submitted_by)
    return Actor(event.source, Role.SERVICE, "")


def _payload(topic: str, event: Event) -> Message | None:
    """The parsed payload of a known dossier event type (EnvelopeError if it does not parse:
    poison), else None: audit records any event, known or not."""
    if topic != events.DOSSIER_TOPIC:
        return None
    payload_type = events.DOSSIER_PAYLOADS.get(event.type)
    return event.parse(payload_type) if payload_type is not None else None


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Proof:
    """An inclusion proof and the head it is against (None when a size was asked for)."""

    index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    head: SignedTreeHead | None


def _reused(record_id: str, index: int | None) -> AlreadyExists:
    where = f" (entry {index})" if index is not None else " (not sequenced yet)"
    return AlreadyExists(
        f"record_id {record_id!r} was already used for a different record{where}; "
        "use a new id for a new record"
    )


def _settings(ctx: ServiceContext) -> AuditSettings:
    assert isinstance(ctx.settings, AuditSettings)
    return ctx.settings


class AuditService(Service):
    """Consumes every event topic and RecordAccess calls; each becomes one log entry."""

    name = "audit"
    settings_class = AuditSettings
    metadata = db.metadata
    inbox_table = db.inbox
    migrations = "motcua_audit:migrations"
    publishes: ClassVar[tuple[str, ...]] = ()

    entries: Dependency[db.AuditLogRepository] = Dependency(lambda ctx: db.AuditLogRepository())
    heads: Dependency[db.TreeHeadRepository] = Dependency(lambda ctx: db.TreeHeadRepository())
    keys: Dependency[LazyKeyRing] = Dependency(lambda ctx: LazyKeyRing(_settings(ctx)))
    clock: Dependency[Callable[[], datetime]] = Dependency(lambda ctx: system_clock)
    context: Dependency[ServiceContext] = Dependency(lambda ctx: ctx)

    def setup(self) -> None:
        self._sign_lock = threading.Lock()
        self._next_sign_check = 0.0
        self._next_self_check = 0.0
        self._scrub_start = 0
        self._verified_head: SignedTreeHead | None = None
        self._newest_head_ms = -1
        s = self.settings
        self.sequencer = Sequencer(
            self.context.sessions,
            self.entries,
            batch_size=s.sequencer_batch_size,
            interval=s.sequencer_interval_seconds,
            linger=s.sequencer_linger_seconds,
        )

    def on_start(self) -> None:
        """Start the sequencer loop; entries staged before a crash are sequenced at once."""
        for check in Check:
            # Every series from 0: an alert on increase() sees the very first failure.
            VERIFICATION_FAILURES.labels(check.value)
        self.sequencer.start()
        self.sequencer.wake()

    def on_stop(self) -> None:
        """Stop the sequencer after its batch in hand; what is still staged stays staged."""
        self.sequencer.stop(min(self.settings.shutdown_grace_seconds / 4, 2.0))

    @property
    def settings(self) -> AuditSettings:
        return _settings(self.context)

    @property
    def key_ring(self) -> KeyRing:
        return self.keys.get()

    def grpc_services(self) -> list[tuple[str, Registration]]:
        # The host calls this only when it starts serving: load the signing key now, so a
        # bad key configuration stops `serve` at once (and `migrate` never needs the key).
        self.key_ring  # noqa: B018
        api = AuditApi(self)
        return [
            registration(
                audit_pb2, "AuditService", audit_pb2_grpc.add_AuditServiceServicer_to_server, api
            )
        ]

    # -- entries from Kafka --------------------------------------------------------------------
    def handlers(self) -> list[Handler]:
        """The per-event handlers below, each also declared with a batch function: the
        consumer runner hands it a poll's records of the topic at once, and they are staged
        with ONE insert (ADR 0012, ADR 0046). If it fails (a poison record), the runner falls
        back to the per-event method, record by record, and the poison is dead-lettered alone."""
        return [replace(h, batch=partial(self.record_events, h.topic)) for h in super().handlers()]

    @event_handler(events.DOSSIER_TOPIC)
    def record_dossier_event(self, event: Event, message: Message | None, session: Session) -> None:
        """A dossier event; known types must parse as their payload (poison → DLQ)."""
        self.record_event(
            session, events.DOSSIER_TOPIC, event, _payload(events.DOSSIER_TOPIC, event)
        )

    @event_handler(events.PAYMENT_TOPIC)
    def record_payment_event(self, event: Event, message: Message | None, session: Session) -> None:
        self.record_event(session, events.PAYMENT_TOPIC, event, None)

    @event_handler(events.NOTIFY_TOPIC)
    def record_notify_event(self, event: Event, message: Message | None, session: Session) -> None:
        self.record_event(session, events.NOTIFY_TOPIC, event, None)

    def record_events(
        self,
        topic: str,
        events_and_messages: Sequence[tuple[Event, Message | None]],
        session: Session,
    ) -> None:
        """Stage a batch of one topic's consumed events, in order, with one insert (the batch
        handler; the inbox rows join the same transaction). The same entries as
        :meth:`record_event` one by one; a known dossier type that does not parse fails the
        whole call, so the runner takes the batch record by record."""
        staged = [
            (self._event_entry(topic, event, _payload(topic, event)), None, None)
            for event, _message in events_and_messages
        ]
        self._stage_many(session, staged)

    def record_event(
        self, session: Session, topic: str, event: Event, message: Message | None
    ) -> db.StagedEntry:
        """Stage one consumed event in the consumer's transaction (the inbox row joins it)."""
        return self._stage(session, self._event_entry(topic, event, message))

    def _event_entry(self, topic: str, event: Event, message: Message | None) -> Entry:
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
            recorded_at=self.clock(),
        )

    def _stage(
        self,
        session: Session,
        entry: Entry,
        fingerprint: str | None = None,
        subject: tuple[str, bytes] | None = None,
    ) -> db.StagedEntry:
        """Stage an entry in the caller's transaction; the sequencer wakes once it commits."""
        return self._stage_many(session, [(entry, fingerprint, subject)])[0]

    def _stage_many(
        self,
        session: Session,
        items: Sequence[tuple[Entry, str | None, tuple[str, bytes] | None]],
    ) -> list[db.StagedEntry]:
        """Stage entries with one insert in the caller's transaction; the sequencer wakes once
        it commits."""
        started = time.perf_counter()
        staged = self.entries.stage_many(session, items)
        APPEND_SECONDS.observe(time.perf_counter() - started)
        on_commit(session, self.sequencer.wake)
        return staged

    def sequence_staged(self) -> int:
        """Sequence everything staged so far, now, in this thread; returns how many."""
        return self.sequencer.drain()

    # -- direct records ------------------------------------------------------------------------
    def record_access(
        self, principal: Principal, record: AccessRecord
    ) -> tuple[db.StoredEntry, bool]:
        """Record an access; returns (entry, replayed). Idempotent on the record id.

        The record is staged, then sequenced before this returns, so the entry has its index.
        """
        principal.require_any("officer", "admin", "service")
        actor = acting_actor(
            principal.subject, principal.roles, principal.agency_code, record.on_behalf_of
        )
        source = events.ACCESS_SOURCE_PREFIX + principal.subject
        fingerprint = record.fingerprint(actor)
        try:
            return self._record_access_once(record, actor, source, fingerprint)
        except IntegrityError:
            # The same caller sent the same record id concurrently and won; replay it.
            return self._record_access_once(record, actor, source, fingerprint)

    def _record_access_once(
        self, record: AccessRecord, actor: Actor, source: str, fingerprint: str
    ) -> tuple[db.StoredEntry, bool]:
        with transaction(self.context.sessions) as session:
            # Staging first, then the log: a row moves from one to the other in one commit,
            # so in this order a record sequenced in between is seen in one of them.
            staged = self.entries.staged_by_source_and_id(session, source, record.record_id)
            earlier = (
                None
                if staged is not None
                else self.entries.by_source_and_id(session, source, record.record_id)
            )
            if earlier is not None:
                if earlier.fingerprint != fingerprint:
                    raise _reused(record.record_id, earlier.index)
                return earlier, True
            if staged is not None:  # sent before, not sequenced yet: a replay once it is
                if staged.fingerprint != fingerprint:
                    raise _reused(record.record_id, None)
                mine = None
            else:
                mine = self._stage_access(session, record, actor, source, fingerprint)
        stored = self._sequenced(source, record.record_id)
        if stored.fingerprint != fingerprint:  # a concurrent call with other content won
            raise _reused(record.record_id, stored.index)
        # Ours, unless it was a replay or a concurrent call with the same content won.
        return stored, mine is None or stored.canonical != mine.canonical

    def _sequenced(self, source: str, record_id: str) -> db.StoredEntry:
        """The entry of a staged record once it is in the log, sequencing it here if need be.

        RecordAccess promises the entry's index: this caller runs sequencer batches itself
        (taking turns at the log's lock with every other writer) rather than wait for a loop.
        """

        def still_staged() -> bool:
            with self.context.sessions() as session:
                return self.entries.staged_by_source_and_id(session, source, record_id) is not None

        timeout = self.settings.record_access_sequencing_timeout_seconds
        try:
            self.sequencer.sequence_until(still_staged, time.monotonic() + timeout)
        except SequencingTimeout:
            raise Aborted(
                f"record {record_id!r} is accepted but not in the log yet; send it again with "
                "the same record_id for its entry"
            ) from None
        with self.context.sessions() as session:
            stored = self.entries.by_source_and_id(session, source, record_id)
        if stored is None:  # left staging without reaching the log: never, by construction
            raise RuntimeError(f"record {record_id!r} left staging but is not in the log")
        return stored

    def _stage_access(
        self, session: Session, record: AccessRecord, actor: Actor, source: str, fingerprint: str
    ) -> db.StagedEntry:
        now = self.clock()
        subject = None
        citizen_ref = b""
        if record.citizen_id:
            salt = os.urandom(16)
            subject = (record.citizen_id, salt)
            citizen_ref = citizen_commitment(record.citizen_id, salt)
        entry = Entry(
            kind=EntryKind.ACCESS,
            event_id=record.record_id,
            event_source=source,
            event_type=events.ACCESS_TYPE,
            event_subject=record.dossier_code,
            event_time=aware(record.accessed_at or now),
            topic="",
            actor=actor,
            dossier_code=record.dossier_code,
            payload_sha256=EMPTY_PAYLOAD_SHA256,
            recorded_at=now,
            purpose=record.purpose,
            resource=record.resource,
            citizen_ref=citizen_ref,
        )
        return self._stage(session, entry, fingerprint, subject)

    # -- tree heads ----------------------------------------------------------------------------
    def sign_tree_head(self) -> SignedTreeHead:
        """Sign (size, root) of the whole log now, and keep the head."""
        ring = self.key_ring
        with self._sign_lock, transaction(self.context.sessions) as session:
            merkle = self.entries.log(session)
            size = merkle.size()
            signed = ring.signer.sign(size, merkle.root(size))
            self.heads.add(session, signed)
        TREE_HEADS_SIGNED.inc()
        self._publish_head(signed.head.timestamp_ms, signed.head.size)
        log.info(
            "signed tree head",
            extra={"tree_size": size, "key_id": signed.head.key_id},
        )
        return signed

    def _publish_head(self, timestamp_ms: int, size: int | None) -> None:
        """Gauges follow the newest head, whichever replica or thread signed it."""
        with self._sign_lock:
            if timestamp_ms < self._newest_head_ms:
                return
            self._newest_head_ms = timestamp_ms
        TREE_HEAD_TIMESTAMP.set(timestamp_ms / 1000)
        if size is not None:
            TREE_HEAD_SIZE.set(size)

    def latest_tree_head(self, covering: int = 0) -> SignedTreeHead:
        """The latest signed head; a fresh one is signed if none covers ``covering`` entries."""
        with self.context.sessions() as session:
            latest = self.heads.latest(session)
        if latest is None or latest.head.size < covering:
            return self.sign_tree_head()
        return latest

    # -- proofs and reads ------------------------------------------------------------------------
    def log_size(self) -> int:
        with self.context.sessions() as session:
            return self.entries.size(session)

    def inclusion_proof(
        self, *, index: int | None = None, leaf_hash: bytes | None = None, tree_size: int = 0
    ) -> Proof:
        """Proof of one entry (by index or leaf hash) in ``tree_size`` (0: latest head)."""
        with self.context.sessions() as session:
            if leaf_hash is not None:
                found = self.entries.index_of_leaf(session, leaf_hash)
                if found is None:
                    raise NotFound("no entry has this leaf hash")
                index = found
            assert index is not None
            size = self.entries.size(session)
            if index < 0 or index >= size:
                raise InvalidArgument("index", f"must be in [0, {size}) (the log size)")
            if tree_size < 0 or tree_size > size:
                raise InvalidArgument("tree_size", f"must be in [0, {size}] (the log size)")
            if tree_size and index >= tree_size:
                raise InvalidArgument("index", f"must be below tree_size {tree_size}")
        head = None
        if tree_size == 0:
            head = self.latest_tree_head(covering=index + 1)
            tree_size = head.head.size
        with self.context.sessions() as session:
            merkle = self.entries.log(session)
            path = merkle.inclusion_proof(index, tree_size)
            leaf = merkle.leaf_hash_at(index)
        return Proof(index, tree_size, leaf, path, head)

    def consistency_proof(
        self, first_size: int, second_size: int = 0
    ) -> tuple[int, int, list[bytes], SignedTreeHead | None]:
        """(first, second, proof, head of second when it was 0)."""
        head = None
        if second_size == 0:
            head = self.latest_tree_head()
            second_size = head.head.size
        with self.context.sessions() as session:
            size = self.entries.size(session)
            if second_size < 0 or second_size > size:
                raise InvalidArgument("second_size", f"must be in [0, {size}] (the log size)")
            if first_size < 0 or first_size > second_size:
                raise InvalidArgument("first_size", f"must be in [0, {second_size}]")
            proof = self.entries.log(session).consistency_proof(first_size, second_size)
        return first_size, second_size, proof, head

    def dossier_trail(
        self, dossier_code: str
    ) -> tuple[list[tuple[db.StoredEntry, list[bytes]]], SignedTreeHead]:
        """Every entry of one dossier with its inclusion proof against one covering head."""
        with self.context.sessions() as session:
            trail = self.entries.trail(session, dossier_code)
        covering = trail[-1].index + 1 if trail else 0
        head = self.latest_tree_head(covering=covering)
        with self.context.sessions() as session:
            merkle = self.entries.log(session)
            proofs = [merkle.inclusion_proof(e.index, head.head.size) for e in trail]
        return list(zip(trail, proofs, strict=True)), head

    def entry_page(
        self, start: int, end: int, limit: int
    ) -> tuple[list[db.StoredEntry], int, int, int]:
        """At most ``limit`` entries from ``start`` below ``end`` (0: the log size).

        Returns (entries, where the next page starts, the effective end, the log size).
        """
        with self.context.sessions() as session:
            size = self.entries.size(session)
            stop_at = size if end == 0 else min(end, size)
            stop = max(min(start + limit, stop_at), start)
            return self.entries.range(session, start, stop), stop, stop_at, size

    # -- the timer: heads on schedule, and the self-check ---------------------------------------
    @timer(TICK_SECONDS)
    def maintain(self) -> None:
        """Sign a head when the interval is due; re-verify the stored log; refresh gauges."""
        now = time.monotonic()
        if now >= self._next_sign_check:
            self._sign_if_due()
        if self.stopping:
            return  # the self-check can wait for the next start; the stop cannot
        if now >= self._next_self_check:
            self._next_self_check = now + self.settings.self_check_interval_seconds
            self.self_check()

    def _sign_if_due(self) -> None:
        interval = self.settings.tree_head_interval_seconds
        with self.context.sessions() as session:
            newest_ms = self.heads.latest_timestamp_ms(session)
            LOG_SIZE.set(self.entries.size(session))
        age = None if newest_ms is None else time.time() - newest_ms / 1000
        if age is None or age >= interval:
            self.sign_tree_head()
            age = 0.0
        elif newest_ms is not None:
            self._publish_head(newest_ms, None)
        # Another replica may sign in between; checking again when ours would be due is enough.
        self._next_sign_check = time.monotonic() + max(interval - age, 0.0)

    def self_check(self) -> list[Finding]:
        """Verify the latest head and one block of the stored log; count and log failures."""
        findings = self._check_latest_head()
        if not self.stopping:
            findings += self._check_next_block()
        for finding in findings:
            VERIFICATION_FAILURES.labels(finding.check.value).inc()
            log.error(
                "audit log self-check failed: %s",
                finding.detail,
                extra={"check": finding.check.value, "index": finding.index},
            )
        return findings

    def _check_latest_head(self) -> list[Finding]:
        with self.context.sessions() as session:
            latest = self.heads.latest(session)
            if latest is None:
                return []
            if not verify_tree_head(latest, self.key_ring.public_keys):
                return [
                    Finding(
                        Check.TREE_HEAD_SIGNATURE,
                        None,
                        f"the stored head of size {latest.head.size} does not verify",
                    )
                ]
            merkle = self.entries.log(session)
            size = latest.head.size
            if size > merkle.size() or not hmac.compare_digest(
                merkle.root(size), latest.head.root_hash
            ):
                return [
                    Finding(
                        Check.TREE_HEAD_ROOT,
                        None,
                        f"the stored nodes do not give the signed root of size {size}",
                    )
                ]
            previous = self._verified_head
            if previous is not None and previous.head.size > size:
                return [
                    Finding(
                        Check.CONSISTENCY,
                        None,
                        f"the latest head has size {size}, below the size "
                        f"{previous.head.size} verified before: the log was rolled back",
                    )
                ]
            if previous is not None:
                proof = merkle.consistency_proof(previous.head.size, size)
                if not verify_consistency(
                    previous.head.size,
                    size,
                    previous.head.root_hash,
                    latest.head.root_hash,
                    proof,
                ):
                    return [
                        Finding(
                            Check.CONSISTENCY,
                            None,
                            f"the head of size {size} does not extend the one of size "
                            f"{previous.head.size} verified before",
                        )
                    ]
        self._verified_head = latest
        return []

    def _check_next_block(self) -> list[Finding]:
        with self.context.sessions() as session:
            size = self.entries.size(session)
            if size == 0:
                return []
            start = self._scrub_start if self._scrub_start < size else 0
            plan = plan_block(start, size)
            rows = self.entries.range(session, plan.start, plan.end)
            stored = self.entries.nodes_in(session, plan.node_ranges)
            stored.update(self.entries.log(session).store.get_many(plan.ancestor_keys))
        self._scrub_start = next_block(start, size)
        return check_block(plan, [r.canonical for r in rows], [r.leaf_hash for r in rows], stored)
