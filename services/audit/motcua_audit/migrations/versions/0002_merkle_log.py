"""The Merkle log: canonical entry bytes, Merkle nodes, signed tree heads, access subjects.

Entries recorded before this revision get their canonical bytes (version 1, with the
producing service as actor) and their leaf and interior nodes, in index order, so the log
covers them like any later entry.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from motcua_audit.domain.entry import Actor, Entry, EntryKind, Role
from motcua_audit.domain.merkle import MemoryNodeStore, MerkleLog, leaf_hash

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
    )
    op.create_index("ix_audit_tree_heads_size", "audit_tree_heads", ["tree_size", "timestamp_ms"])
    op.create_index("ix_audit_tree_heads_time", "audit_tree_heads", ["timestamp_ms"])
    op.create_table(
        "audit_access_subjects",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("citizen_id", sa.String(12), nullable=False),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_access_subjects_citizen", "audit_access_subjects", ["citizen_id"])
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="event"))
        batch.add_column(sa.Column("entry", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("leaf_hash", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))

    _backfill()

    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("entry", existing_type=sa.LargeBinary, nullable=False)
        batch.alter_column("leaf_hash", existing_type=sa.LargeBinary(32), nullable=False)
        batch.alter_column(
            "dossier_code", existing_type=sa.String(40), type_=sa.String(200), nullable=False
        )
        batch.create_index("ux_audit_entries_leaf_hash", ["leaf_hash"], unique=True)
        batch.create_index("ux_audit_entries_source_id", ["event_source", "event_id"], unique=True)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _CollectingStore(MemoryNodeStore):
    """Keeps every node written, in order, to insert them afterwards in batches."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, int, bytes]] = []

    def put_many(self, items: Iterable[tuple[int, int, bytes]]) -> None:
        batch = list(items)
        super().put_many(batch)
        self.written.extend(batch)


def _backfill() -> None:
    """Canonical bytes and Merkle nodes for rows recorded by revision 0001."""
    conn = op.get_bind()
    entries = sa.table(
        "audit_entries",
        sa.column("idx", sa.BigInteger),
        sa.column("event_id", sa.String),
        sa.column("event_type", sa.String),
        sa.column("event_source", sa.String),
        sa.column("event_time", sa.DateTime(timezone=True)),
        sa.column("dossier_code", sa.String),
        sa.column("payload_sha256", sa.String),
        sa.column("topic", sa.String),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
        sa.column("entry", sa.LargeBinary),
        sa.column("leaf_hash", sa.LargeBinary),
    )
    nodes = sa.table(
        "audit_nodes",
        sa.column("level", sa.SmallInteger),
        sa.column("idx", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    store = _CollectingStore()
    log = MerkleLog(store)
    rows = conn.execute(sa.select(entries).order_by(entries.c.idx)).all()
    for expected, row in enumerate(rows):
        if row.idx != expected:
            raise RuntimeError(
                f"audit_entries is not gapless: index {row.idx} where {expected} was expected"
            )
        entry = Entry(
            kind=EntryKind.EVENT,
            event_id=row.event_id,
            event_source=row.event_source,
            event_type=row.event_type,
            event_subject=row.dossier_code,
            event_time=_aware(row.event_time),
            topic=row.topic,
            actor=Actor(row.event_source, Role.SERVICE, ""),
            dossier_code=row.dossier_code,
            payload_sha256=bytes.fromhex(row.payload_sha256),
            recorded_at=_aware(row.recorded_at),
        )
        data = entry.encode()
        leaf = leaf_hash(data)
        log.append_leaf_hashes([leaf])
        conn.execute(
            entries.update().where(entries.c.idx == row.idx).values(entry=data, leaf_hash=leaf)
        )
    pending = [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in store.written]
    for i in range(0, len(pending), _BATCH):
        conn.execute(nodes.insert(), pending[i : i + _BATCH])


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_index("ux_audit_entries_source_id")
        batch.drop_index("ux_audit_entries_leaf_hash")
        batch.alter_column(
            "dossier_code", existing_type=sa.String(200), type_=sa.String(40), nullable=False
        )
        batch.drop_column("fingerprint")
        batch.drop_column("leaf_hash")
        batch.drop_column("entry")
        batch.drop_column("kind")
    op.drop_index("ix_audit_access_subjects_citizen", "audit_access_subjects")
    op.drop_table("audit_access_subjects")
    op.drop_index("ix_audit_tree_heads_time", "audit_tree_heads")
    op.drop_index("ix_audit_tree_heads_size", "audit_tree_heads")
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_nodes")
