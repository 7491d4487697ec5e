"""Writes to one message racing each other, on both stores: none undoes another.

MySQL reads committed rows without locking them, so an action that read a message and wrote it
back whole could overwrite a change committed in between (SQLite serializes write transactions,
MySQL does not). Each test starts the second action between the first one's read and its write,
and gives it 0.3 s: where the store serializes the two, the second waits for the first instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from parley.composition import Parley
from parley.domain.actions import conversations, messages
from parley.domain.models import Role, User, Workspace
from parley.settings import Settings
from tests.engines import engine_url
from tests.support.engines import mysql_database


@pytest.fixture(params=["sqlite", "mysql"])
async def parley(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Parley]:
    if request.param == "sqlite":
        app = Parley(Settings(data_dir=tmp_path), "tool")
        await app.start("store")
        yield app
        await app.close()
        return
    with mysql_database(engine_url("mysql")) as url:
        app = Parley(Settings(data_dir=tmp_path, database_url=url), "tool")
        await app.start("store")
        yield app
        await app.close()


async def _alice_in_a_channel(parley: Parley) -> tuple[User, int]:
    ids = parley.ids
    now = datetime.now(UTC)
    alice = User(
        id=ids.next_id(), username=f"alice{ids.next_id() % 10**6}", display_name="Alice", created_at=now
    )
    workspace = Workspace(
        id=ids.next_id(), name="W", slug=f"w{ids.next_id()}", created_by=alice.id, created_at=now
    )
    async with parley.store.write() as tx:
        await tx.create_user_txn(alice, "not a real hash")
        await tx.create_workspace_txn(workspace)
        await tx.add_workspace_member_txn(workspace.id, alice.id, Role.OWNER)
    channel = await conversations.create_channel(parley.deps, alice, workspace.id, "general")
    return alice, channel.id


def _during_the_next_edit(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], Awaitable[None]]
) -> list[Any]:
    """Start ``action`` inside the next edit, after it has read the message and before it writes."""
    resolve_mentions = messages._resolve_mentions
    started: list[asyncio.Task[None]] = []

    async def resolve_then_race(reader: Any, workspace_id: int, text: str) -> Any:
        if not started:
            started.append(asyncio.create_task(action()))  # type: ignore[arg-type]
            await asyncio.wait(started, timeout=0.3)
        return await resolve_mentions(reader, workspace_id, text)

    monkeypatch.setattr(messages, "_resolve_mentions", resolve_then_race)
    return started


async def test_a_delete_committed_during_an_edit_stays_deleted(
    parley: Parley, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, channel = await _alice_in_a_channel(parley)
    message, _ = await messages.send_message(parley.deps, alice, channel, "a secret")

    async def delete() -> None:
        await messages.delete_message(parley.deps, alice, message.id)

    started = _during_the_next_edit(monkeypatch, delete)
    try:
        await messages.edit_message(parley.deps, alice, message.id, "edited")
    except Exception as error:  # the edit may lose the race instead: then it must say so
        assert getattr(error, "code", None) == "message_not_found", error
    await asyncio.gather(*started)
    async with parley.store.read() as reader:
        stored = await reader.get_message(message.id)
    assert stored is not None and stored.deleted, f"the delete was undone: {stored}"


async def test_a_reply_committed_during_an_edit_of_its_root_is_counted(
    parley: Parley, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, channel = await _alice_in_a_channel(parley)
    root, _ = await messages.send_message(parley.deps, alice, channel, "root")

    async def reply() -> None:
        await messages.send_message(parley.deps, alice, channel, "reply", thread_root_id=root.id)

    started = _during_the_next_edit(monkeypatch, reply)
    await messages.edit_message(parley.deps, alice, root.id, "root, edited")
    await asyncio.gather(*started)
    async with parley.store.read() as reader:
        stored = await reader.get_message(root.id)
    assert stored is not None
    assert (stored.text, stored.reply_count) == ("root, edited", 1)


async def test_the_events_of_racing_writes_carry_consecutive_seqs(parley: Parley) -> None:
    alice, channel = await _alice_in_a_channel(parley)
    message, _ = await messages.send_message(parley.deps, alice, channel, "hello")
    await asyncio.gather(
        messages.edit_message(parley.deps, alice, message.id, "hello again"),
        messages.add_reaction(parley.deps, alice, message.id, "wave"),
        messages.add_reaction(parley.deps, alice, message.id, "tada"),
    )
    async with parley.store.read() as reader:
        conversation = await reader.get_conversation(channel)
        stored = await reader.get_message(message.id)
    assert conversation is not None and stored is not None
    assert stored.text == "hello again" and sorted(r.emoji for r in stored.reactions) == ["tada", "wave"]
    first_event_seq = message.seq
    assert conversation.last_seq == first_event_seq + 3  # one event each, no seq skipped or shared
