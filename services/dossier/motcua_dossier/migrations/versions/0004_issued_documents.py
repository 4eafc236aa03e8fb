"""The signed documents issued for dossiers: forms and results, with their SHA-256 (ADR 0086).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("agency_code", sa.String(20), nullable=False),
        sa.Column("kind", sa.Integer, nullable=False),
        sa.Column("form_number", sa.String(40), nullable=False),
        sa.Column("number", sa.String(60), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature_level", sa.String(10), nullable=False),
        sa.Column("signer", sa.String(500), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("cause", sa.String(60), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_issued_documents_dossier",
        "issued_documents",
        ["dossier_code", "ordinal"],
        unique=True,
    )
    op.create_index("ix_issued_documents_sha256", "issued_documents", ["sha256"])


def downgrade() -> None:
    op.drop_table("issued_documents")
