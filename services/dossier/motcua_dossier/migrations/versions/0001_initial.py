"""Dossiers, the per-agency daily sequence, outbox and inbox.

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


def upgrade() -> None:
    op.create_table(
        "dossiers",
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("procedure_code", sa.String(40), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("applicant_full_name", sa.String(200), nullable=False),
        sa.Column("applicant_citizen_id", sa.String(12), nullable=False),
        sa.Column("applicant_phone", sa.String(15), nullable=False),
        sa.Column("applicant_email", sa.String(254), nullable=False),
        sa.Column("applicant_address", sa.String(500), nullable=False),
        sa.Column("channel", sa.Integer, nullable=False),
        sa.Column("documents", sa.JSON, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("appointment_date", sa.Date, nullable=False),
        sa.Column("fee_vnd", sa.BigInteger, nullable=True),
        sa.Column("submitted_by_subject", sa.String(200), nullable=False),
        sa.Column("submitted_by_role", sa.String(20), nullable=False),
        sa.Column("submitted_by_agency", sa.String(20), nullable=False),
        sa.Column("idempotency_scope", sa.String(400), nullable=False, unique=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
    )
    op.create_index("ix_dossiers_applicant", "dossiers", ["applicant_citizen_id"])
    op.create_index("ix_dossiers_agency_status", "dossiers", ["agency_code", "status"])
    op.create_table(
        "dossier_sequences",
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("last_value", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("agency_code", "day", name="pk_dossier_sequences"),
    )
    create_outbox_table()
    create_inbox_table()


def downgrade() -> None:
    for table in ("inbox", "outbox", "dossier_sequences", "dossiers"):
        op.drop_table(table)
