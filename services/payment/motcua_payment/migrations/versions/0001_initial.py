"""Payments, refunds, receipt sequences, the replay guard, history, outbox and inbox.

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
_OPEN = sa.text("state IN ('created', 'pending')")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("amount_vnd", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payer_full_name", sa.String(200), nullable=False),
        sa.Column("payer_citizen_id", sa.String(12), nullable=False),
        sa.Column("payer_phone", sa.String(15), nullable=False),
        sa.Column("payer_email", sa.String(254), nullable=False),
        sa.Column("gateway", sa.String(40), nullable=False),
        sa.Column("redirect_url", sa.Text, nullable=False),
        sa.Column("gateway_transaction_id", sa.String(64), nullable=False),
        sa.Column("failure_code", sa.String(16), nullable=False),
        sa.Column("receipt_number", sa.String(40), nullable=True, unique=True),
        sa.Column("receipt_issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_subject", sa.String(200), nullable=False),
        sa.Column("created_by_role", sa.String(20), nullable=False),
        sa.Column("created_by_agency", sa.String(20), nullable=False),
        sa.Column("idempotency_scope", sa.String(400), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
    )
    op.create_index("ix_payments_dossier", "payments", ["dossier_code"])
    op.create_index("ix_payments_payer", "payments", ["payer_citizen_id"])
    op.create_index("ix_payments_state_created", "payments", ["state", "created_at"])
    op.create_index("ix_payments_state_expires", "payments", ["state", "expires_at"])
    op.create_index(
        "ux_payments_open_dossier",
        "payments",
        ["dossier_code"],
        unique=True,
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("payment_id", sa.String(32), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("amount_vnd", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("gateway_transaction_id", sa.String(64), nullable=False),
        sa.Column("failure_code", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by_subject", sa.String(200), nullable=False),
        sa.Column("requested_by_role", sa.String(20), nullable=False),
        sa.Column("requested_by_agency", sa.String(20), nullable=False),
        sa.Column("idempotency_scope", sa.String(400), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
    )
    op.create_index("ix_refunds_payment", "refunds", ["payment_id"])
    op.create_index("ix_refunds_state_requested", "refunds", ["state", "requested_at"])
    op.create_table(
        "receipt_sequences",
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("last_value", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("agency_code", "year", name="pk_receipt_sequences"),
    )
    op.create_table(
        "gateway_notices",
        sa.Column("gateway", sa.String(40), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(32), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "transaction_id", name="pk_gateway_notices"),
    )
    op.create_table(
        "payment_history",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("payment_id", sa.String(32), sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("refund_id", sa.String(32), nullable=True),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("actor_subject", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_payment_history_payment", "payment_history", ["payment_id", "id"])
    create_outbox_table()
    create_inbox_table()


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "payment_history",
        "gateway_notices",
        "receipt_sequences",
        "refunds",
        "payments",
    ):
        op.drop_table(table)
