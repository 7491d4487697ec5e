"""messages.client_msg_id and reactions.emoji compared byte for byte on MySQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

The database's default collation (utf8mb4_unicode_ci) folds case and weighs every character
beyond the BMP alike. A client's opaque ``client_msg_id`` "ABC" then collided with an earlier
"abc" (the send was refused as a duplicate, forever), and a 🍺 reaction was taken for an earlier
🍣 of the same user on the same message. SQLite compares bytes already: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _on_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


_TOKEN = "VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin"
_EMOJI = "VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


def upgrade() -> None:
    if _on_mysql():
        # client_msg_id is ASCII by its validation (A-Z a-z 0-9 . _ : -).
        op.execute(f"ALTER TABLE messages MODIFY client_msg_id {_TOKEN} NULL")
        op.execute(f"ALTER TABLE reactions MODIFY emoji {_EMOJI} NOT NULL")


def downgrade() -> None:
    if _on_mysql():
        op.execute("ALTER TABLE reactions MODIFY emoji VARCHAR(64) NOT NULL")
        op.execute("ALTER TABLE messages MODIFY client_msg_id VARCHAR(64) NULL")
