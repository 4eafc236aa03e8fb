"""The audit service: a tamper-evident log of every motcua event and every direct access.

Use cases read top-down: ``record_*`` stage entries (Kafka handlers and ``RecordAccess``) and
the sequencer appends them to the log in batches (ADR 0046),
``sign_tree_head`` commits to the log's state, the proof queries answer auditors, and the
timer signs heads on schedule and re-verifies the stored log. The gRPC adapter
(``adapters/grpc_api.py``) translates at the edge and ``adapters/messages.py`` maps protobuf;
the domain (``domain/``) decides, who may call what included (``domain/permissions.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from motcua.audit.v1 import audit_pb2, audit_pb2_grpc
from motcua_audit import documents, events, metrics, reads, recording
from motcua_audit.adapters import db
from motcua_audit.adapters.grpc_api import AuditApi
from motcua_audit.adapters.keys import KeyRing, LazyKeyRing
from motcua_audit.adapters.messages import event_entry, payload_of
from motcua_audit.domain.access import AccessRecord
from motcua_audit.domain.entry import Entry
from motcua_audit.domain.proofs import Proof
from motcua_audit.domain.self_check import (
    Check,
    Finding,
    check_block,
    check_head,
    next_block,
    plan_block,
)
from motcua_audit.domain.tree_head import SignedTreeHead
from motcua_audit.sequencer import Sequencer
from motcua_audit.settings import AuditSettings
from motcua_kit.auth import Principal
from motcua_kit.consumer import Handler
from motcua_kit.db import on_commit, transaction
from motcua_kit.envelope import Event
from motcua_kit.grpc_server import Registration, registration
from motcua_kit.service import Dependency, Service, event_handler, timer

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
"""The timer's period; signing and self-checks run when their configured interval is due."""


class AuditService(Service[AuditSettings]):
    """Consumes every event topic and RecordAccess calls; each becomes one log entry."""

    name = "audit"
    metadata = db.metadata
    inbox_table = db.inbox
    migrations = "motcua_audit:migrations"

    entries: Dependency[db.AuditLogRepository] = Dependency(lambda ctx: db.AuditLogRepository())
    heads: Dependency[db.TreeHeadRepository] = Dependency(lambda ctx: db.TreeHeadRepository())
    keys: Dependency[LazyKeyRing] = Dependency(lambda ctx: LazyKeyRing(ctx.settings))

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
            metrics.VERIFICATION_FAILURES.labels(check.value)
        self.sequencer.start()
        self.sequencer.wake()

    def on_stop(self) -> None:
        """Stop the sequencer after its batch in hand; what is still staged stays staged."""
        self.sequencer.stop(min(self.settings.shutdown_grace_seconds / 4, 2.0))

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
            session, events.DOSSIER_TOPIC, event, payload_of(events.DOSSIER_TOPIC, event)
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
            (self._event_entry(topic, event, payload_of(topic, event)), None, None)
            for event, _message in events_and_messages
        ]
        self._stage_many(session, staged)
        documents.count_unindexed(session, (entry for entry, _, _ in staged))

    def record_event(
        self, session: Session, topic: str, event: Event, message: Message | None
    ) -> db.StagedEntry:
        """Stage one consumed event in the consumer's transaction (the inbox row joins it)."""
        entry = self._event_entry(topic, event, message)
        documents.count_unindexed(session, [entry])
        return self.stage(session, entry)

    def _event_entry(self, topic: str, event: Event, message: Message | None) -> Entry:
        return event_entry(topic, event, message, self.clock())

    def stage(
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
        metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
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
        return recording.record_access(self, principal, record)

    # -- tree heads ----------------------------------------------------------------------------
    def sign_tree_head(self) -> SignedTreeHead:
        """Sign (size, root) of the whole log now, and keep the head."""
        ring = self.key_ring
        with self._sign_lock, transaction(self.context.sessions) as session:
            merkle = self.entries.log(session)
            size = merkle.size()
            signed = ring.signer.sign(size, merkle.root(size))
            self.heads.add(session, signed)
        metrics.TREE_HEADS_SIGNED.inc()
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
        metrics.TREE_HEAD_TIMESTAMP.set(timestamp_ms / 1000)
        if size is not None:
            metrics.TREE_HEAD_SIZE.set(size)

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
        return reads.inclusion_proof(self, index, leaf_hash, tree_size)

    def consistency_proof(
        self, first_size: int, second_size: int = 0
    ) -> tuple[int, int, list[bytes], SignedTreeHead | None]:
        """(first, second, proof, head of second when it was 0)."""
        return reads.consistency_proof(self, first_size, second_size)

    def dossier_trail(
        self, dossier_code: str
    ) -> tuple[list[tuple[db.StoredEntry, list[bytes]]], SignedTreeHead]:
        """Every entry of one dossier with its inclusion proof against one covering head."""
        return reads.dossier_trail(self, dossier_code)

    def document_proof(self, sha256_hex: str) -> documents.DocumentProof:
        """The entry that recorded an issued document's hash, proved against a signed head."""
        return documents.document_proof(self, sha256_hex)

    def entry_page(
        self, start: int, end: int, limit: int
    ) -> tuple[list[db.StoredEntry], int, int, int]:
        """At most ``limit`` entries from ``start`` below ``end`` (0: the log size).

        Returns (entries, where the next page starts, the effective end, the log size).
        """
        return reads.entry_page(self, start, end, limit)

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
            metrics.LOG_SIZE.set(self.entries.size(session))
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
            metrics.VERIFICATION_FAILURES.labels(finding.check.value).inc()
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
            public_keys = self.key_ring.public_keys
            merkle = self.entries.log(session)
            findings = check_head(latest, public_keys, merkle, self._verified_head)
        if not findings:
            self._verified_head = latest
        return findings

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
