"""Staged entries: accepted by a writer's transaction, appended to the log by the sequencer.

Writers (the consumer, RecordAccess) insert here without any log-wide lock; the sequencer moves
batches of rows into audit_entries and audit_nodes under one lock per batch (ADR 0046).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_staged_entries",
        # INTEGER PRIMARY KEY on SQLite (its rowid), a bigint identity on PostgreSQL.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("event_source", sa.String(200), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dossier_code", sa.String(200), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("citizen_id", sa.String(12), nullable=True),
        sa.Column("salt", sa.LargeBinary(32), nullable=True),
    )
    op.create_index(
        "ux_audit_staged_source_id",
        "audit_staged_entries",
        ["event_source", "event_id"],
        unique=True,
    )


def downgrade() -> None:
    # Staged rows are accepted entries: refuse to drop them rather than lose them.
    conn = op.get_bind()
    left = conn.execute(sa.text("SELECT count(*) FROM audit_staged_entries")).scalar_one()
    if left:
        raise RuntimeError(
            f"{left} entries are staged but not sequenced: run the service until they are "
            "in the log, then downgrade"
        )
    op.drop_index("ux_audit_staged_source_id", "audit_staged_entries")
    op.drop_table("audit_staged_entries")
