"""outbox: an index for pruning published rows by age

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The relay prunes published rows older than the retention every ten minutes; without this index
each prune walked the whole outbox (72 hours of rows by default).
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_published_age", ["published", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_published_age")
