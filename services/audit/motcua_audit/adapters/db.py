"""The audit service's tables: entries, Merkle nodes, signed tree heads, access subjects.

The Merkle log lives in ``audit_nodes`` (one row per perfect subtree, ``(level, idx, hash)``,
see ``domain.merkle``): an append writes the leaf and the 0..log2(n) parents it completes,
a proof reads O(log n) rows with one query. An entry row, its nodes and the consumer's inbox
row commit in one transaction, so the log never holds an entry twice or a half-written one.

Appends are serialised by the database, which every replica and thread shares: SQLite's
``BEGIN IMMEDIATE`` (the kit's engine) holds the single write lock for the whole
transaction; on PostgreSQL the append takes a transaction-scoped advisory lock before it
reads the log size, so two appenders can never both claim the same index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from motcua_audit.domain.entry import Entry
from motcua_audit.domain.merkle import MerkleLog, NodeKey
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
    Index("ix_audit_entries_dossier", "dossier_code", "idx"),
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
        if rows:
            # A key that exists already violates the primary key: nodes are immutable.
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
        """Append entries in order with one frontier read and one node write."""
        self.lock(session)
        canonical = [e.encode() for e, _, _ in items]
        leaves = [hashlib.sha256(b"\x00" + c).digest() for c in canonical]
        indices = self.log(session).append_leaf_hashes(leaves)
        rows = []
        subjects = []
        for index, (entry, fingerprint, subject), data, leaf in zip(
            indices, items, canonical, leaves, strict=True
        ):
            rows.append(
                {
                    "idx": index,
                    "event_id": entry.event_id,
                    "event_type": entry.event_type,
                    "event_source": entry.event_source,
                    "event_time": entry.event_time,
                    "dossier_code": entry.dossier_code,
                    "payload_sha256": entry.payload_sha256.hex(),
                    "topic": entry.topic,
                    "recorded_at": entry.recorded_at,
                    "kind": entry.kind.value,
                    "entry": data,
                    "leaf_hash": leaf,
                    "fingerprint": fingerprint,
                }
            )
            if subject is not None:
                subjects.append({"idx": index, "citizen_id": subject[0], "salt": subject[1]})
        if rows:
            session.execute(insert(entries), rows)
        if subjects:
            session.execute(insert(access_subjects), subjects)
        return [
            StoredEntry(i, d, h, fp)
            for i, d, h, (_, fp, _) in zip(indices, canonical, leaves, items, strict=True)
        ]

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
