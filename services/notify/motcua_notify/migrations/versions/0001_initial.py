"""Notifications (one per event, channel and recipient), their history, opt-outs, dossier
snapshots, outbox and inbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from motcua_kit.migrations import create_inbox_table, create_outbox_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("citizen_id", sa.String(12), nullable=False),
        sa.Column("template", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("sms_segments", sa.Integer, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reference", sa.String(80), nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("provider_ref", sa.String(200), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trace_headers", sa.JSON, nullable=False),
        sa.UniqueConstraint("event_id", "channel", "recipient", name="uq_notifications_once"),
    )
    op.create_index("ix_notifications_due", "notifications", ["state", "next_attempt_at"])
    op.create_index("ix_notifications_dossier", "notifications", ["dossier_code", "seq"])
    op.create_index("ix_notifications_provider_ref", "notifications", ["provider", "provider_ref"])
    op.create_table(
        "notification_history",
        sa.Column("seq", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "notification_id",
            sa.String(36),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
    )
    op.create_index(
        "ix_notification_history_notification",
        "notification_history",
        ["notification_id", "seq"],
    )
    op.create_table(
        "opt_outs",
        sa.Column("citizen_id", sa.String(12), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("citizen_id", "channel", name="pk_opt_outs"),
    )
    op.create_table(
        "dossier_snapshots",
        sa.Column("dossier_code", sa.String(40), primary_key=True),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("procedure_code", sa.String(40), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("appointment_date", sa.String(10), nullable=False),
        sa.Column("submitted_date", sa.String(10), nullable=False),
        sa.Column("citizen_id", sa.String(12), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(15), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_outbox_table()
    create_inbox_table()


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "dossier_snapshots",
        "opt_outs",
        "notification_history",
        "notifications",
    ):
        op.drop_table(table)
