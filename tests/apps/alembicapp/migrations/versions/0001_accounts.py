"""accounts (invoices come in a later revision)"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(40)))


def downgrade():
    op.drop_table("accounts")
