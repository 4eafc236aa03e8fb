"""The audit service's tables: entries, Merkle nodes, signed tree heads, access subjects.

The Merkle log lives in ``audit_nodes`` (one row per perfect subtree, ``(level, idx, hash)``,
see ``domain.merkle``): an append writes the leaf and the 0..log2(n) parents it completes,
a proof reads O(log n) rows with one query. An entry row, its nodes and the consumer's inbox
row commit in one transaction, so the log never holds an entry twice or a half-written one.

Entries reach the log in two steps (ADR 0046). A consumer's transaction (or RecordAccess)
*stages* the canonical entry in ``audit_staged_entries``, with its inbox row and without any
log-wide lock, so replicas stage in parallel. The sequencer then takes up to a batch of staged
rows in order and, in ONE transaction under ONE lock, reads the frontier once, computes the
leaf and node hashes in memory, bulk-inserts entries and nodes and deletes the staged rows.
A batch that fails rolls back whole: its staged rows stay for the next one.

Batches are serialised by the database, which every replica and thread shares: SQLite's
``BEGIN IMMEDIATE`` (the kit's engine) holds the single write lock for the whole
transaction; on PostgreSQL the batch takes a transaction-scoped advisory lock before it
reads the log size, so two sequencers can never both claim the same index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from motcua_audit import events
from motcua_audit.domain.documents import parse_document_resource
from motcua_audit.domain.entry import Entry, EntryKind
from motcua_audit.domain.merkle import MerkleLog, NodeKey, leaf_hash, leaf_hashes
from motcua_audit.domain.tree_head import SignedTreeHead, TreeHead
from motcua_kit.consumer import inbox_table

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    # Gapless position in the log, from 0: the Merkle tree's leaf index.
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("event_source", String(200), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("dossier_code", String(200), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False, server_default="event"),
    # The canonical entry bytes: the source of truth; the columns above are for queries.
    Column("entry", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    # Access records: SHA-256 of the request, to tell a retry from a reused record id.
    Column("fingerprint", String(64), nullable=True),
    # document_issued events: the paper's SHA-256 (hex) from the resource (ADR 0087).
    Column("document_sha256", String(64), nullable=True),
    Index("ix_audit_entries_dossier", "dossier_code", "idx"),
    Index(
        "ix_audit_entries_document",
        "document_sha256",
        "idx",
        sqlite_where=text("document_sha256 IS NOT NULL"),
        postgresql_where=text("document_sha256 IS NOT NULL"),
    ),
    Index("ux_audit_entries_leaf_hash", "leaf_hash", unique=True),
    Index("ux_audit_entries_source_id", "event_source", "event_id", unique=True),
)

nodes = Table(
    "audit_nodes",
    metadata,
    # Perfect subtree of 2**level leaves starting at leaf idx * 2**level.
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

tree_heads = Table(
    "audit_tree_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Index("ix_audit_tree_heads_size", "tree_size", "timestamp_ms"),
    Index("ix_audit_tree_heads_time", "timestamp_ms"),
)

# Whose data an access record is about. Kept outside the (never rewritten) log so personal
# data can be erased: the entry holds only SHA-256(salt || citizen_id).
access_subjects = Table(
    "audit_access_subjects",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("citizen_id", String(12), nullable=False),
    Column("salt", LargeBinary(32), nullable=False),
    Index("ix_audit_access_subjects_citizen", "citizen_id"),
)

# Entries accepted but not yet in the log (ADR 0046): written in the caller's transaction, moved
# into audit_entries (and gone from here) by one sequencer batch. ``id`` is the staging order.
staged_entries = Table(
    "audit_staged_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("event_source", String(200), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("dossier_code", String(200), nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("entry", LargeBinary, nullable=False),
    Column("fingerprint", String(64), nullable=True),
    # Access records: whose data (moved to audit_access_subjects with the entry's index).
    Column("citizen_id", String(12), nullable=True),
    Column("salt", LargeBinary(32), nullable=True),
    Column("document_sha256", String(64), nullable=True),
    Index("ux_audit_staged_source_id", "event_source", "event_id", unique=True),
    Index(
        "ix_audit_staged_document",
        "document_sha256",
        sqlite_where=text("document_sha256 IS NOT NULL"),
        postgresql_where=text("document_sha256 IS NOT NULL"),
    ),
)

inbox = inbox_table(metadata)

_ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"motcua.audit.log.append").digest()[:8], "big", signed=True
)


class SqlNodeStore:
    """``NodeStore`` over ``audit_nodes`` inside the caller's session (its transaction)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get_many(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        if not keys:
            return {}
        # OR of (level, idx) pairs: both SQLite and PostgreSQL answer it with one index probe
        # per key (SQLite would scan the table for a row-value IN).
        rows = self._session.execute(
            select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(
                or_(*(and_(nodes.c.level == lv, nodes.c.idx == ix) for lv, ix in set(keys)))
            )
        )
        return {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}

    def put_many(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        rows = [{"level": lv, "idx": ix, "hash": bytes(h)} for lv, ix, h in items]
        if not rows:
            return
        # A key that exists already violates the primary key: nodes are immutable.
        if _is_postgresql(self._session):
            _pg_execute(self._session, _PG_PUT_NODES, _columns(rows, ("level", "idx", "hash")))
        else:
            self._session.execute(insert(nodes), rows)

    def size(self) -> int:
        # ORDER BY ... LIMIT 1 walks the primary key from its end; SQLite does not do that
        # for max() under a WHERE clause and would read every leaf.
        top = self._session.scalar(
            select(nodes.c.idx).where(nodes.c.level == 0).order_by(nodes.c.idx.desc()).limit(1)
        )
        return 0 if top is None else int(top) + 1


@dataclass(frozen=True)
class StoredEntry:
    """An entry as the log holds it: position, canonical bytes, leaf hash, decoded fields."""

    index: int
    canonical: bytes
    leaf_hash: bytes
    fingerprint: str | None = None

    @property
    def entry(self) -> Entry:
        return Entry.decode(self.canonical)


def _stored(row: object) -> StoredEntry:
    return StoredEntry(
        index=int(row.idx),  # type: ignore[attr-defined]
        canonical=bytes(row.entry),  # type: ignore[attr-defined]
        leaf_hash=bytes(row.leaf_hash),  # type: ignore[attr-defined]
        fingerprint=row.fingerprint,  # type: ignore[attr-defined]
    )


_ENTRY_COLUMNS = (entries.c.idx, entries.c.entry, entries.c.leaf_hash, entries.c.fingerprint)

_STAGED_ENTRY_COLUMNS = (
    "event_id",
    "event_type",
    "event_source",
    "event_time",
    "dossier_code",
    "payload_sha256",
    "topic",
    "recorded_at",
    "kind",
    "entry",
    "fingerprint",
    "document_sha256",
)
"""What a staged row carries into ``audit_entries`` (which adds ``idx`` and ``leaf_hash``)."""


_STAGE = insert(staged_entries)

_TAKE = (
    select(
        staged_entries.c.id,
        staged_entries.c.entry,
        staged_entries.c.fingerprint,
        staged_entries.c.kind,
        staged_entries.c.citizen_id.is_not(None).label("has_subject"),
        select(literal_column("1"))
        .where(
            entries.c.event_source == staged_entries.c.event_source,
            entries.c.event_id == staged_entries.c.event_id,
        )
        .limit(1)
        .scalar_subquery()
        .is_not(None)
        .label("duplicate"),
    )
    .order_by(staged_entries.c.id)
    .limit(bindparam("limit", type_=Integer, literal_execute=True))
)
"""The oldest staged rows: what the hashes need, and whether the log holds them already.

The duplicate check is one index probe per taken row, and must stay that: written as EXISTS,
PostgreSQL turned it, in the generic plan of the prepared statement, into a *hashed* subplan
built from a sequential scan of all of ``audit_entries``, per batch (60-100 ms at 100k
entries, against 3-5 ms for the probes), so batches slowed down as the log grew. A scalar
subquery with LIMIT 1 cannot be hashed. The batch size is rendered into the SQL
(``literal_execute``) so the plan is made for it, not for an unknown LIMIT."""

_COPY_ENTRY = insert(entries).from_select(
    ["idx", "leaf_hash", *_STAGED_ENTRY_COLUMNS],
    select(
        cast(bindparam("new_idx", type_=BigInteger), BigInteger),
        cast(bindparam("new_leaf", type_=LargeBinary), LargeBinary),
        *(staged_entries.c[c] for c in _STAGED_ENTRY_COLUMNS),
    ).where(staged_entries.c.id == bindparam("sid")),
)
"""SQLite: one staged row into the log at its index, copied inside the database (executemany,
in-process). PostgreSQL moves a whole batch with one statement instead (``_PG_MOVE``)."""

_COPY_SUBJECT = insert(access_subjects).from_select(
    ["idx", "citizen_id", "salt"],
    select(
        cast(bindparam("new_idx", type_=BigInteger), BigInteger),
        staged_entries.c.citizen_id,
        staged_entries.c.salt,
    ).where(staged_entries.c.id == bindparam("sid")),
)


# -- PostgreSQL: one statement per batch, whatever its size ---------------------------------------
# ``executemany`` runs its statement once per row on the server (psycopg pipelines the round
# trips, not the executions). On PostgreSQL a batch's rows go as one array per column instead,
# joined with ``unnest``: one statement, and its text is the same for every batch size, so the
# server plans it once (psycopg prepares it). The arrays are sent in psycopg's *binary* format
# (``%(name)b``): dumping a list of bytes as a text array escapes every byte in Python, some
# hundred times slower than the binary form. That is why these run as driver SQL
# (``exec_driver_sql``, psycopg's placeholders) rather than through ``text()``.


def _pg_array_type(column: Column[Any]) -> str:
    """The element type of ``column``'s array parameter. Strings go as TEXT: a CAST to
    VARCHAR(n) would silently truncate, the column's own check raises."""
    if isinstance(column.type, String):
        return "TEXT"
    if isinstance(column.type, DateTime):
        return "TIMESTAMPTZ"
    if isinstance(column.type, LargeBinary):
        return "BYTEA"
    if isinstance(column.type, SmallInteger):
        return "SMALLINT"
    if isinstance(column.type, BigInteger | Integer):
        return "BIGINT"
    raise TypeError(f"no array type for {column}")  # pragma: no cover - a new column's type


def _pg_arrays(table: Table, names: Sequence[str]) -> str:
    """``CAST(%(a)b AS T[]), ...``: one binary array parameter per column."""
    return ", ".join(f"CAST(%({n})b AS {_pg_array_type(table.c[n])}[])" for n in names)


_STAGED_INSERT_COLUMNS = (*_STAGED_ENTRY_COLUMNS, "citizen_id", "salt")

_PG_STAGE = (
    f"INSERT INTO {staged_entries.name} ({', '.join(_STAGED_INSERT_COLUMNS)}) "
    f"SELECT {', '.join(_STAGED_INSERT_COLUMNS)} "
    f"FROM unnest({_pg_arrays(staged_entries, _STAGED_INSERT_COLUMNS)}) "
    f"WITH ORDINALITY AS u({', '.join(_STAGED_INSERT_COLUMNS)}, ord) ORDER BY ord"
)
"""A batch staged in its order (``id`` follows ``ord``): one statement, arrays per column."""

_PG_PUT_NODES = (
    f"INSERT INTO {nodes.name} (level, idx, hash) "
    f"SELECT * FROM unnest({_pg_arrays(nodes, ('level', 'idx', 'hash'))})"
)

_PG_MOVE = (
    "WITH moved AS ("
    f" DELETE FROM {staged_entries.name} s"
    " USING unnest(CAST(%(sid)b AS BIGINT[]), CAST(%(new_idx)b AS BIGINT[]),"
    " CAST(%(new_leaf)b AS BYTEA[])) AS b(sid, idx, leaf)"
    " WHERE s.id = b.sid"
    f" RETURNING b.idx, b.leaf, {', '.join('s.' + c for c in _STAGED_INSERT_COLUMNS)}"
    "), logged AS ("
    f" INSERT INTO {entries.name} (idx, leaf_hash, {', '.join(_STAGED_ENTRY_COLUMNS)})"
    f" SELECT idx, leaf, {', '.join(_STAGED_ENTRY_COLUMNS)} FROM moved WHERE idx IS NOT NULL"
    " RETURNING 1"
    "), subjects AS ("
    f" INSERT INTO {access_subjects.name} (idx, citizen_id, salt)"
    " SELECT idx, citizen_id, salt FROM moved WHERE idx IS NOT NULL AND citizen_id IS NOT NULL"
    ")"
    " SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM logged)"
)
"""A whole batch out of staging into the log, in ONE statement: the taken staged rows are
deleted, those with an index (not duplicates) copied into ``audit_entries`` at it with their
leaf hash, and their access subjects moved. The columns never round-trip through Python.
Returns (rows deleted, entries written), which the caller checks."""


def _is_postgresql(session: Session) -> bool:
    """PostgreSQL through psycopg (the ``_PG_*`` statements use its binary placeholders)."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _pg_execute(session: Session, sql: str, arrays: Mapping[str, list[Any]]) -> Any:
    """Run one of the ``_PG_*`` statements in the session's transaction."""
    return session.connection().exec_driver_sql(sql, dict(arrays))


def _columns(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """Rows as one list per column (the array parameters of an ``unnest`` statement)."""
    return {n: [r[n] for r in rows] for n in names}


@dataclass(frozen=True)
class StagedEntry:
    """An entry accepted into staging: its bytes and leaf hash are final, its index is not."""

    canonical: bytes
    leaf_hash: bytes
    fingerprint: str | None = None


@dataclass(frozen=True)
class SequencedBatch:
    """What one sequencer batch appended (each entry with its kind) and how many it dropped."""

    appended: list[tuple[StoredEntry, str]]
    dropped: int

    @property
    def taken(self) -> int:
        """Staged rows the batch consumed (appended or dropped as duplicates)."""
        return len(self.appended) + self.dropped


def _row(
    entry: Entry, fingerprint: str | None, subject: tuple[str, bytes] | None
) -> dict[str, Any]:
    """The query columns and canonical bytes of one entry (plus its access subject)."""
    return {
        "event_id": entry.event_id,
        "event_type": entry.event_type,
        "event_source": entry.event_source,
        "event_time": entry.event_time,
        "dossier_code": entry.dossier_code,
        "payload_sha256": entry.payload_sha256.hex(),
        "topic": entry.topic,
        "recorded_at": entry.recorded_at,
        "kind": entry.kind.value,
        "entry": entry.encode(),
        "fingerprint": fingerprint,
        "document_sha256": document_sha256(entry),
        "subject": subject,
    }


def document_sha256(entry: Entry) -> str | None:
    """The issued document's SHA-256 hex, indexed for GetDocumentProof: only a consumed
    document_issued event's resource counts. An access record's resource is the caller's
    text, so one naming a "document:" resource never answers for a paper."""
    if entry.kind is not EntryKind.EVENT or entry.event_type != events.DOCUMENT_ISSUED:
        return None
    parsed = parse_document_resource(entry.resource)
    return None if parsed is None else parsed[1]


class AuditLogRepository:
    """The append-only log: entries and their Merkle nodes, appended in the caller's transaction."""

    @staticmethod
    def log(session: Session) -> MerkleLog:
        """The Merkle log as seen by ``session`` (no state of its own; cheap to make)."""
        return MerkleLog(SqlNodeStore(session))

    @staticmethod
    def lock(session: Session) -> None:
        """Serialise appenders across processes (PostgreSQL; SQLite's BEGIN IMMEDIATE does)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})

    def append(
        self,
        session: Session,
        entry: Entry,
        *,
        fingerprint: str | None = None,
        subject: tuple[str, bytes] | None = None,
    ) -> StoredEntry:
        """Append one entry at the next index; ``subject`` = (citizen ID, salt) of an access."""
        return self.append_many(session, [(entry, fingerprint, subject)])[0]

    def append_many(
        self,
        session: Session,
        items: Sequence[tuple[Entry, str | None, tuple[str, bytes] | None]],
    ) -> list[StoredEntry]:
        """Append entries in order at once (under the lock): one frontier read, bulk writes.

        The direct path, for fills and migrations; the service stages and sequences instead.
        """
        self.lock(session)
        rows = [_row(entry, fingerprint, subject) for entry, fingerprint, subject in items]
        return self._append_rows(session, rows)

    def _extend(self, session: Session, canonical: Sequence[bytes]) -> tuple[range, list[bytes]]:
        """Give entries the next indices: leaf and node hashes computed in memory from one
        frontier read, every new node written with one multi-row insert. The caller holds the
        lock (``lock``) in this transaction and writes the entry rows."""
        leaves = leaf_hashes(canonical)
        return self.log(session).append_leaf_hashes(leaves), leaves

    def _append_rows(self, session: Session, rows: Sequence[dict[str, Any]]) -> list[StoredEntry]:
        """Append ``rows`` (entry columns, canonical ``entry``, ``subject``) at the next indices."""
        canonical = [bytes(r["entry"]) for r in rows]
        indices, leaves = self._extend(session, canonical)
        entry_rows = []
        subjects = []
        for index, row, leaf in zip(indices, rows, leaves, strict=True):
            subject = row["subject"]
            entry_rows.append(
                {k: v for k, v in row.items() if k != "subject"} | {"idx": index, "leaf_hash": leaf}
            )
            if subject is not None:
                citizen_id, salt = subject
                subjects.append({"idx": index, "citizen_id": citizen_id, "salt": salt})
        if entry_rows:
            session.execute(insert(entries), entry_rows)
        if subjects:
            session.execute(insert(access_subjects), subjects)
        return [
            StoredEntry(i, d, h, r["fingerprint"])
            for i, d, h, r in zip(indices, canonical, leaves, rows, strict=True)
        ]

    # -- staging and sequencing (ADR 0046) -------------------------------------------------------
    @staticmethod
    def stage(
        session: Session,
        entry: Entry,
        *,
        fingerprint: str | None = None,
        subject: tuple[str, bytes] | None = None,
    ) -> StagedEntry:
        """Stage one entry in the caller's transaction: one insert, no lock on the log."""
        return AuditLogRepository.stage_many(session, [(entry, fingerprint, subject)])[0]

    @staticmethod
    def stage_many(
        session: Session,
        items: Sequence[tuple[Entry, str | None, tuple[str, bytes] | None]],
    ) -> list[StagedEntry]:
        """Stage entries in order with one (multi-row) insert, in the caller's transaction."""
        rows = []
        out = []
        for entry, fingerprint, subject in items:
            row = _row(entry, fingerprint, subject)
            del row["subject"]
            row["citizen_id"], row["salt"] = subject if subject is not None else (None, None)
            rows.append(row)
            data = row["entry"]
            out.append(StagedEntry(data, leaf_hash(data), fingerprint))
        if not rows:
            return out
        if _is_postgresql(session):
            # One statement for the whole batch (arrays per column), the same for any size.
            _pg_execute(session, _PG_STAGE, _columns(rows, _STAGED_INSERT_COLUMNS))
        else:
            # The statement is built once: ``insert().values(row)`` would compile per call.
            session.execute(_STAGE, rows)
        return out

    def sequence_batch(self, session: Session, limit: int) -> SequencedBatch:
        """Move up to ``limit`` staged entries, oldest first, into the log in this transaction.

        Takes the log's lock first, so the batch's indices are the next ones whoever else is
        sequencing. Only ids and canonical bytes come to Python (for the hashes); the entry
        rows are copied inside the database: on PostgreSQL the copy, the subjects and the
        delete are ONE statement joining the staged rows with the batch's arrays of ids,
        indices and leaf hashes (``_PG_MOVE``); on SQLite (in-process, no round trips) an
        ``INSERT ... SELECT`` per row and one delete. Either way the statements per batch
        are constant. A staged entry whose (source, id) the log already holds is a duplicate
        (two callers raced with one record id): it is dropped, never appended twice.
        """
        self.lock(session)
        taken = session.execute(_TAKE, {"limit": limit}).all()
        if not taken:
            return SequencedBatch([], 0)
        fresh = [r for r in taken if not r.duplicate]
        canonical = [bytes(r.entry) for r in fresh]
        indices, leaves = self._extend(session, canonical)
        if _is_postgresql(session):
            self._move_staged_pg(session, taken, fresh, indices, leaves)
        else:
            if fresh:
                self._copy_staged(session, fresh, indices, leaves)
            session.execute(
                delete(staged_entries).where(staged_entries.c.id.in_([r.id for r in taken]))
            )
        stored = [
            (StoredEntry(i, d, h, r.fingerprint), str(r.kind))
            for i, d, h, r in zip(indices, canonical, leaves, fresh, strict=True)
        ]
        return SequencedBatch(stored, len(taken) - len(fresh))

    @staticmethod
    def _move_staged_pg(
        session: Session,
        taken: Sequence[Any],
        fresh: Sequence[Any],
        indices: range,
        leaves: Sequence[bytes],
    ) -> None:
        """PostgreSQL: the batch's staged rows into the log (at their indices, with their
        subjects) and out of staging, duplicates only deleted: one statement (``_PG_MOVE``)."""
        placed = {r.id: (i, h) for r, i, h in zip(fresh, indices, leaves, strict=True)}
        sids = [r.id for r in taken]
        moved, logged = _pg_execute(
            session,
            _PG_MOVE,
            {
                "sid": sids,
                "new_idx": [placed[s][0] if s in placed else None for s in sids],
                "new_leaf": [placed[s][1] if s in placed else None for s in sids],
            },
        ).one()
        if (moved, logged) != (len(taken), len(fresh)):
            # Never, under the lock; if it were, the log would have nodes without entries.
            raise RuntimeError(
                f"sequencer batch: {moved} of {len(taken)} staged rows moved, {logged} of "
                f"{len(fresh)} entries written; rolling the batch back"
            )

    @staticmethod
    def _copy_staged(
        session: Session, rows: Sequence[Any], indices: range, leaves: Sequence[bytes]
    ) -> None:
        """Staged rows into ``audit_entries`` (and access subjects) at their indices."""
        session.execute(
            _COPY_ENTRY,
            [
                {"sid": r.id, "new_idx": i, "new_leaf": h}
                for r, i, h in zip(rows, indices, leaves, strict=True)
            ],
        )
        subjects = [
            {"sid": r.id, "new_idx": i} for r, i in zip(rows, indices, strict=True) if r.has_subject
        ]
        if subjects:
            session.execute(_COPY_SUBJECT, subjects)

    @staticmethod
    def staged_by_source_and_id(session: Session, source: str, event_id: str) -> StagedEntry | None:
        row = session.execute(
            select(staged_entries.c.entry, staged_entries.c.fingerprint).where(
                staged_entries.c.event_source == source, staged_entries.c.event_id == event_id
            )
        ).first()
        if row is None:
            return None
        data = bytes(row.entry)
        return StagedEntry(data, leaf_hash(data), row.fingerprint)

    @staticmethod
    def staged_count(session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(staged_entries)) or 0)

    @staticmethod
    def size(session: Session) -> int:
        return SqlNodeStore(session).size()

    @staticmethod
    def trail(session: Session, dossier_code: str) -> list[StoredEntry]:
        rows = session.execute(
            select(*_ENTRY_COLUMNS)
            .where(entries.c.dossier_code == dossier_code)
            .order_by(entries.c.idx)
        ).all()
        return [_stored(r) for r in rows]

    @staticmethod
    def range(session: Session, start: int, end: int) -> list[StoredEntry]:
        """Entries with ``start <= index < end``, in order."""
        rows = session.execute(
            select(*_ENTRY_COLUMNS)
            .where(entries.c.idx >= start, entries.c.idx < end)
            .order_by(entries.c.idx)
        ).all()
        return [_stored(r) for r in rows]

    @staticmethod
    def index_of_leaf(session: Session, leaf_hash: bytes) -> int | None:
        found = session.scalar(select(entries.c.idx).where(entries.c.leaf_hash == leaf_hash))
        return None if found is None else int(found)

    @staticmethod
    def by_document_sha256(session: Session, sha256_hex: str) -> StoredEntry | None:
        """The first entry that recorded this document hash (a replay or a re-issue of the same
        bytes records it again; the first is when the paper was issued). One probe of the
        partial index ``ix_audit_entries_document``."""
        row = session.execute(
            select(*_ENTRY_COLUMNS)
            .where(entries.c.document_sha256 == sha256_hex)
            .order_by(entries.c.idx)
            .limit(1)
        ).first()
        return None if row is None else _stored(row)

    @staticmethod
    def document_staged(session: Session, sha256_hex: str) -> bool:
        """Whether an entry recording this document hash is staged, not yet sequenced."""
        found = session.scalar(
            select(staged_entries.c.id)
            .where(staged_entries.c.document_sha256 == sha256_hex)
            .limit(1)
        )
        return found is not None

    @staticmethod
    def by_source_and_id(session: Session, source: str, event_id: str) -> StoredEntry | None:
        row = session.execute(
            select(*_ENTRY_COLUMNS).where(
                entries.c.event_source == source, entries.c.event_id == event_id
            )
        ).first()
        return None if row is None else _stored(row)

    @staticmethod
    def recorded_leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
        """Level-0 node hashes for ``[start, end)``: what the log committed to per position."""
        rows = session.execute(
            select(nodes.c.hash)
            .where(nodes.c.level == 0, nodes.c.idx >= start, nodes.c.idx < end)
            .order_by(nodes.c.idx)
        ).scalars()
        return [bytes(h) for h in rows]

    @staticmethod
    def nodes_in(session: Session, ranges: Mapping[int, tuple[int, int]]) -> dict[NodeKey, bytes]:
        """Stored nodes with ``lo <= idx < hi`` per level, in one query (for the scrub)."""
        if not ranges:
            return {}
        clauses = [
            and_(nodes.c.level == level, nodes.c.idx >= lo, nodes.c.idx < hi)
            for level, (lo, hi) in ranges.items()
        ]
        rows = session.execute(
            select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(or_(*clauses))
        )
        return {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}

    @staticmethod
    def access_subject(session: Session, index: int) -> tuple[str, bytes] | None:
        row = session.execute(
            select(access_subjects.c.citizen_id, access_subjects.c.salt).where(
                access_subjects.c.idx == index
            )
        ).first()
        return None if row is None else (row.citizen_id, bytes(row.salt))


class TreeHeadRepository:
    """Signed tree heads, kept so proofs can name them and auditors can fetch old ones."""

    @staticmethod
    def add(session: Session, signed: SignedTreeHead) -> None:
        h = signed.head
        session.execute(
            insert(tree_heads).values(
                tree_size=h.size,
                root_hash=h.root_hash,
                timestamp_ms=h.timestamp_ms,
                key_id=h.key_id,
                signature=signed.signature,
            )
        )

    @staticmethod
    def _signed(row: object) -> SignedTreeHead:
        head = TreeHead(
            size=int(row.tree_size),  # type: ignore[attr-defined]
            root_hash=bytes(row.root_hash),  # type: ignore[attr-defined]
            timestamp_ms=int(row.timestamp_ms),  # type: ignore[attr-defined]
            key_id=str(row.key_id),  # type: ignore[attr-defined]
        )
        return SignedTreeHead(head, bytes(row.signature))  # type: ignore[attr-defined]

    def latest(self, session: Session) -> SignedTreeHead | None:
        """The head of the largest tree (the newest of those, if several)."""
        row = session.execute(
            select(tree_heads)
            .order_by(tree_heads.c.tree_size.desc(), tree_heads.c.timestamp_ms.desc())
            .limit(1)
        ).first()
        return None if row is None else self._signed(row)

    @staticmethod
    def latest_timestamp_ms(session: Session) -> int | None:
        value = session.scalar(select(func.max(tree_heads.c.timestamp_ms)))
        return None if value is None else int(value)

    def checkpoints(self, session: Session, up_to_size: int, limit: int) -> list[SignedTreeHead]:
        """At most ``limit`` stored heads of sizes up to ``up_to_size``, one per size, spread
        evenly over the sizes (the newest head of each size)."""
        sizes = [
            int(s)
            for s in session.scalars(
                select(tree_heads.c.tree_size)
                .where(tree_heads.c.tree_size <= up_to_size)
                .distinct()
                .order_by(tree_heads.c.tree_size)
            )
        ]
        if limit <= 0 or not sizes:
            return []
        if len(sizes) > limit:
            step = len(sizes) / limit
            sizes = sorted({sizes[int(i * step)] for i in range(limit)})
        out: list[SignedTreeHead] = []
        for size in sizes:
            row = session.execute(
                select(tree_heads)
                .where(tree_heads.c.tree_size == size)
                .order_by(tree_heads.c.timestamp_ms.desc())
                .limit(1)
            ).first()
            if row is not None:
                out.append(self._signed(row))
        return out
