"""The dossier fee facts a payment is bound to (ADR 0022), backfilled from existing payments.

A dossier that already has payments gets the fact its newest payment was made for: open
unless that payment succeeded and was not fully refunded. Dossiers known to the dossier
service but never paid for are learned from their next event.

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    fees = op.create_table(
        "dossier_fees",
        sa.Column("dossier_code", sa.String(40), primary_key=True),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("procedure_code", sa.String(40), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("amount_vnd", sa.BigInteger, nullable=True),
        sa.Column("payer_full_name", sa.String(200), nullable=False),
        sa.Column("payer_citizen_id", sa.String(12), nullable=False),
        sa.Column("payer_phone", sa.String(15), nullable=False),
        sa.Column("payer_email", sa.String(254), nullable=False),
        sa.Column("request_event_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT dossier_code, agency_code, amount_vnd, state, payer_full_name, "
                "payer_citizen_id, payer_phone, payer_email FROM payments "
                "ORDER BY created_at, id"
            )
        )
        .all()
    )
    newest = {r.dossier_code: r for r in rows}
    now = datetime.now(UTC)
    if newest:
        op.bulk_insert(
            fees,
            [
                {
                    "dossier_code": r.dossier_code,
                    "agency_code": r.agency_code,
                    "procedure_code": "",
                    "state": "closed" if r.state == "succeeded" else "open",
                    "amount_vnd": r.amount_vnd,
                    "payer_full_name": r.payer_full_name,
                    "payer_citizen_id": r.payer_citizen_id,
                    "payer_phone": r.payer_phone,
                    "payer_email": r.payer_email,
                    "request_event_id": "",
                    "updated_at": now,
                }
                for r in newest.values()
            ],
        )


def downgrade() -> None:
    op.drop_table("dossier_fees")
