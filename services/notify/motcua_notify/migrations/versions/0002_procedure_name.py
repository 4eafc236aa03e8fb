"""The procedure's name on dossier snapshots, so that payment notices can name it too.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Snapshots from before have no name: notices show the code alone until the next event.
    with op.batch_alter_table("dossier_snapshots") as batch:
        batch.add_column(
            sa.Column("procedure_name", sa.String(300), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("dossier_snapshots") as batch:
        batch.drop_column("procedure_name")
