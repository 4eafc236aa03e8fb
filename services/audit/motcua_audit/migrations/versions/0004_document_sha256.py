"""Issued documents by hash: ``document_sha256`` on entries and staged entries (ADR 0087).

A vn.motcua.dossier.document_issued.v1 entry names its paper in ``resource``
(``document:<id>:sha256:<hex>``); the column holds that hex, indexed, so GetDocumentProof
finds the entry with one index probe. NULL for every other entry, and the indexes are
partial (``WHERE document_sha256 IS NOT NULL``), so they hold only documents. Entries recorded
before this revision carry no document resource (older versions left it empty): nothing to
fill.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PARTIAL = sa.text("document_sha256 IS NOT NULL")


def upgrade() -> None:
    # A nullable column without a default: an ALTER TABLE ADD COLUMN on both databases (no
    # table rewrite on PostgreSQL, no copy on SQLite).
    op.add_column("audit_entries", sa.Column("document_sha256", sa.String(64), nullable=True))
    op.add_column(
        "audit_staged_entries", sa.Column("document_sha256", sa.String(64), nullable=True)
    )
    op.create_index(
        "ix_audit_entries_document",
        "audit_entries",
        ["document_sha256", "idx"],
        sqlite_where=_PARTIAL,
        postgresql_where=_PARTIAL,
    )
    op.create_index(
        "ix_audit_staged_document",
        "audit_staged_entries",
        ["document_sha256"],
        sqlite_where=_PARTIAL,
        postgresql_where=_PARTIAL,
    )


def downgrade() -> None:
    op.drop_index("ix_audit_staged_document", "audit_staged_entries")
    op.drop_index("ix_audit_entries_document", "audit_entries")
    with op.batch_alter_table("audit_staged_entries") as batch:
        batch.drop_column("document_sha256")
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("document_sha256")
