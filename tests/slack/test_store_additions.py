"""The store methods the facade added, on SQLite and MariaDB (same tests, same assertions):
message by (conversation, seq), workspace by slug, bots, API tokens by hash; and migration
0003 creates exactly the tables schema.py declares for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from parley.adapters.store import schema
from parley.composition import Parley
from parley.domain.integrations import ApiToken, Bot, TokenKind, hash_token, new_token
from parley.domain.models import Conversation, ConversationKind, Message, Role, User, Workspace
from parley.ids import IdGenerator
from parley.ports.store import Store
from parley.settings import Settings
from tests.engines import engine_url
from tests.support.engines import mysql_database

ids = IdGenerator(98)
FACADE_TABLES = {"bots", "api_tokens"}


@pytest.fixture(params=["sqlite", "mysql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        parley = Parley(Settings(data_dir=tmp_path), "tool")
        await parley.start("store")
        yield parley.store
        await parley.close()
        return
    with mysql_database(engine_url("mysql")) as url:
        parley = Parley(Settings(data_dir=tmp_path, database_url=url), "tool")
        await parley.start("store")
        yield parley.store
        await parley.close()


def _now() -> datetime:
    return datetime.now(UTC)


async def _workspace_with_user(store: Store) -> tuple[User, Workspace]:
    user = User(id=ids.next_id(), username=f"u{ids.next_id()}", display_name="U", created_at=_now())
    workspace = Workspace(
        id=ids.next_id(), name="W", slug=f"w{ids.next_id()}", created_by=user.id, created_at=_now()
    )
    async with store.write() as tx:
        await tx.create_user_txn(user, "!")
        await tx.create_workspace_txn(workspace)
        await tx.add_workspace_member_txn(workspace.id, user.id, Role.OWNER)
    return user, workspace


async def test_message_is_found_by_conversation_and_seq(store: Store) -> None:
    user, workspace = await _workspace_with_user(store)
    conversation = Conversation(
        id=ids.next_id(),
        workspace_id=workspace.id,
        kind=ConversationKind.PUBLIC,
        name="general",
        created_by=user.id,
        created_at=_now(),
        last_seq=0,
    )
    messages = [
        Message(
            id=ids.next_id(),
            conversation_id=conversation.id,
            workspace_id=workspace.id,
            seq=seq,
            user_id=user.id,
            text=f"m{seq}",
            created_at=_now(),
        )
        for seq in (2, 5)
    ]
    async with store.write() as tx:
        await tx.create_conversation_txn(conversation, None)
        await tx.insert_messages_txn(messages)
        await tx.add_reaction_txn(messages[1].id, user.id, "tada")
    async with store.read() as reader:
        found = await reader.get_message_by_seq(conversation.id, 5)
        assert found is not None and found.id == messages[1].id and found.reactions[0].emoji == "tada"
        assert await reader.get_message_by_seq(conversation.id, 3) is None
        assert await reader.get_message_by_seq(ids.next_id(), 2) is None
        assert (await reader.get_workspace_by_slug(workspace.slug)) == workspace
        assert await reader.get_workspace_by_slug("no-such-slug") is None


async def test_bots_and_tokens_are_stored_and_tokens_only_by_hash(store: Store) -> None:
    user, workspace = await _workspace_with_user(store)
    bot = Bot(
        user_id=user.id,
        workspace_id=workspace.id,
        name=user.username,
        event_types=("message", "reaction_added"),
        created_by=None,
        created_at=_now(),
    )
    token = new_token(TokenKind.BOT)
    row = ApiToken(
        token_hash=hash_token(token),
        kind=TokenKind.BOT,
        user_id=user.id,
        workspace_id=workspace.id,
        created_at=_now(),
    )
    async with store.write() as tx:
        await tx.create_bot_txn(bot)
        await tx.create_api_token_txn(row)
    async with store.read() as reader:
        assert await reader.get_bots([user.id, ids.next_id()]) == [bot]
        assert await reader.get_bots([]) == []
        assert await reader.get_api_token(hash_token(token)) == row
        assert await reader.get_api_token(token) is None, "the token itself is not a key"
    async with store.write() as tx:
        assert await tx.delete_api_token_txn(hash_token(token))
        assert not await tx.delete_api_token_txn(hash_token(token))
    async with store.read() as reader:
        assert await reader.get_api_token(hash_token(token)) is None


async def test_migration_creates_the_declared_facade_tables(store: Store) -> None:
    engine: Any = store._writer  # type: ignore[attr-defined]  # the adapter's engine, to inspect

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        return [d for d in compare_metadata(context, schema.metadata) if _table_of(d) in FACADE_TABLES]

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


def _table_of(difference: Any) -> str | None:
    item = difference[0] if isinstance(difference, list) else difference
    for part in item[1:]:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if isinstance(part, str) and part in FACADE_TABLES:
            return part
        if name in FACADE_TABLES:
            return str(name)
    return None
