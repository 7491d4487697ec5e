"""The relational schema, shared by SQLite and MySQL/MariaDB (Alembic migrations create it).

Indexes are chosen for the hot reads: history pages by (conversation_id, seq), unread counts
by (conversation_id, seq) against each member's ``last_read_seq``, relay scans of unpublished
outbox rows by (published, id), and resume by (conversation_id, seq) on the outbox.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# 40,000 characters of UTF-8 can exceed MySQL's TEXT (64 KiB): use MEDIUMTEXT there.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
LongBlob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
# Microsecond timestamps on MySQL (plain DATETIME would truncate to seconds).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Strings compared byte for byte on MySQL, as SQLite does. The database's default collation
# (utf8mb4_unicode_ci) folds case, and weighs every character beyond the BMP alike (🍣 = 🍺):
# a client's opaque id "ABC" would be a retry of "abc", and a 🍺 reaction a repeat of 🍣.
AsciiToken = String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)
BinaryText64 = String(64).with_variant(
    mysql.VARCHAR(64, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", Timestamp, nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(128), nullable=False),
    Column("slug", String(64), nullable=False, unique=True),
    Column("created_by", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

workspace_members = Table(
    "workspace_members",
    metadata,
    Column("workspace_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("role", String(16), nullable=False),
    Column("joined_at", Timestamp, nullable=False),
    Index("ix_workspace_members_user", "user_id"),
)

workspace_invites = Table(
    "workspace_invites",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("workspace_id", BigInteger, nullable=False),
    Column("created_by", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("workspace_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(80), nullable=True),
    Column("topic", String(250), nullable=False, default=""),
    # DMs and group DMs are unique per set of members: sorted member ids joined by ':'.
    Column("dm_key", String(255), nullable=True),
    Column("created_by", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seq", BigInteger, nullable=False, default=0),
    UniqueConstraint("workspace_id", "name", name="uq_conversations_workspace_name"),
    UniqueConstraint("workspace_id", "dm_key", name="uq_conversations_workspace_dm_key"),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column("conversation_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("joined_at", Timestamp, nullable=False),
    Column("last_read_seq", BigInteger, nullable=False, default=0),
    Index("ix_conversation_members_user", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("conversation_id", BigInteger, nullable=False),
    Column("workspace_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("text", LongText, nullable=False),
    Column("client_msg_id", AsciiToken, nullable=True),
    Column("thread_root_id", BigInteger, nullable=True),
    Column("reply_count", Integer, nullable=False, default=0),
    Column("mentions", Text, nullable=False, default="[]"),
    Column("mentions_channel", Boolean, nullable=False, default=False),
    Column("created_at", Timestamp, nullable=False),
    Column("edited_at", Timestamp, nullable=True),
    Column("deleted", Boolean, nullable=False, default=False),
    UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
    # A retried send (same user, same client_msg_id) must find the first one, never insert twice.
    UniqueConstraint("user_id", "client_msg_id", name="uq_messages_user_client_msg_id"),
    Index("ix_messages_thread", "thread_root_id", "seq"),
)

reactions = Table(
    "reactions",
    metadata,
    Column("message_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("emoji", BinaryText64, primary_key=True),
    Column("created_at", Timestamp, nullable=False),
)

# The transactional outbox, kept (pruned by age) as each conversation's replayable event stream.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, nullable=False, unique=True),
    Column("conversation_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("payload", LongBlob, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("published", Boolean, nullable=False, default=False),
    # The request that caused the event: relayed as a Kafka header so consumers log it too.
    Column("request_id", String(64), nullable=True),
    UniqueConstraint("conversation_id", "seq", name="uq_outbox_conversation_seq"),
    Index("ix_outbox_unpublished", "published", "id"),
    Index("ix_outbox_published_age", "published", "created_at"),  # pruning (migration 0004)
)

# -- Slack-compatible facade (migration 0003) ------------------------------------------------
# A bot is a user with this row; its event subscriptions are a comma-separated list.
bots = Table(
    "bots",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("workspace_id", BigInteger, nullable=False),
    Column("name", String(64), nullable=False),
    Column("event_types", String(255), nullable=False),
    Column("created_by", BigInteger, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_bots_workspace", "workspace_id"),
)

# API tokens (xoxp/xoxb/xapp): only the SHA-256 of each token is stored.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("workspace_id", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_api_tokens_user", "user_id"),
)
