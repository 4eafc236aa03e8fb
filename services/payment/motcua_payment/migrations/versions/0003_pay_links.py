"""Short pay links: a token per payment, on the public callback host (issue 14, point 4).

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
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("pay_token", sa.String(16), nullable=True))
        batch.add_column(sa.Column("pay_url", sa.Text, nullable=False, server_default=""))
        batch.create_unique_constraint("uq_payments_pay_token", ["pay_token"])


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("uq_payments_pay_token", type_="unique")
        batch.drop_column("pay_url")
        batch.drop_column("pay_token")
