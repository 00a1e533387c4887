"""create widgets, with one row"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    widgets = op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    op.bulk_insert(widgets, [{"id": 1, "name": "first"}])


def downgrade() -> None:
    op.drop_table("widgets")
