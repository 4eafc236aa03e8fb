"""The payments announced for a dossier's open fee request; only they may settle it (ADR 0022).

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
        "fee_payments",
        sa.Column("payment_id", sa.String(32), primary_key=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("amount_vnd", sa.BigInteger, nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_fee_payments_dossier", "fee_payments", ["dossier_code"])


def downgrade() -> None:
    op.drop_table("fee_payments")
