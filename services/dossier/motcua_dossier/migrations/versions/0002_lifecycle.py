"""Receipt, completion, deadline and waiting-time columns for the dossier lifecycle.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_FALSE = sa.text("false")


def upgrade() -> None:
    with op.batch_alter_table("dossiers") as batch:
        batch.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("original_appointment_date", sa.Date, nullable=True))
        batch.add_column(sa.Column("overdue", sa.Boolean, nullable=False, server_default=_FALSE))
        batch.add_column(sa.Column("paused_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("due_soon_notified", sa.Boolean, nullable=False, server_default=_FALSE)
        )
        batch.add_column(
            sa.Column("overdue_notified", sa.Boolean, nullable=False, server_default=_FALSE)
        )
    op.create_index("ix_dossiers_submitted", "dossiers", ["submitted_at", "code"])


def downgrade() -> None:
    op.drop_index("ix_dossiers_submitted", "dossiers")
    with op.batch_alter_table("dossiers") as batch:
        for column in (
            "overdue_notified",
            "due_soon_notified",
            "paused_since",
            "overdue",
            "original_appointment_date",
            "completed_at",
            "received_at",
        ):
            batch.drop_column(column)
