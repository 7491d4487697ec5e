"""The store contract, run against SQLite (embedded) and MySQL/MariaDB: same tests, same
assertions. These are the guarantees the domain builds its promises on."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, event

from parley.adapters.store.sql import SqlStore
from parley.composition import Parley
from parley.domain.errors import Conflict
from parley.domain.events import Event, EventType
from parley.domain.models import Conversation, ConversationKind, Message, Role, User, Workspace
from parley.ids import IdGenerator
from parley.ports.store import CommittedEvent, Store, StoreWriter
from parley.settings import Settings
from tests.engines import engine_url
from tests.support.engines import mysql_database

ids = IdGenerator(99)


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


async def _conversation(store: Store, name: str = "general") -> tuple[User, Conversation]:
    user = User(id=ids.next_id(), username=f"u{ids.next_id()}", display_name="U", created_at=_now())
    ws = Workspace(
        id=ids.next_id(), name="W", slug=f"w{ids.next_id()}", created_by=user.id, created_at=_now()
    )
    conv = Conversation(
        id=ids.next_id(),
        workspace_id=ws.id,
        kind=ConversationKind.PUBLIC,
        name=name,
        created_by=user.id,
        created_at=_now(),
        last_seq=0,
    )
    async with store.write() as tx:
        await tx.create_user_txn(user, "hash")
        await tx.create_workspace_txn(ws)
        await tx.add_workspace_member_txn(ws.id, user.id, Role.OWNER)
        await tx.create_conversation_txn(conv, None)
        await tx.add_member_txn(conv.id, user.id, 0)
    return user, conv


def _message(user: User, conv: Conversation, seq: int, client_msg_id: str | None = None) -> Message:
    return Message(
        id=ids.next_id(),
        conversation_id=conv.id,
        workspace_id=conv.workspace_id,
        seq=seq,
        user_id=user.id,
        text=f"m{seq}",
        client_msg_id=client_msg_id,
        created_at=_now(),
    )


def _event(conv: Conversation, seq: int) -> Event:
    return Event(
        type=EventType.MESSAGE_CREATED,
        event_id=ids.next_id(),
        workspace_id=conv.workspace_id,
        conversation_id=conv.id,
        seq=seq,
        ts=_now(),
        data={"message": {}},
    )


async def test_concurrent_writers_get_gap_free_unique_seqs(store: Store) -> None:
    user, conv = await _conversation(store)

    async def send(n: int) -> int:
        async with store.write() as tx:
            seq = await tx.bump_seq_txn(conv.id)
            await tx.insert_messages_txn([_message(user, conv, seq)])
            await tx.append_events_txn([_event(conv, seq)])
            return seq

    seqs = await asyncio.gather(*(send(n) for n in range(40)))
    assert sorted(seqs) == list(range(1, 41))
    async with store.read() as reader:
        events = await reader.events_after(conv.id, 0, 100)
        pending = await reader.unpublished_events(100)
    assert len(events) == 40
    mine = [r for r in pending if r.conversation_id == conv.id]
    # Outbox order (what the relay publishes) is seq order within a conversation.
    assert [Event.from_bytes(r.payload).seq for r in mine] == list(range(1, 41))


async def test_bumping_several_conversations_at_once_reserves_each_its_own_seqs(store: Store) -> None:
    _, first = await _conversation(store)
    _, second = await _conversation(store, "random")
    async with store.write() as tx:
        assert await tx.bump_seq_txn(first.id, 2) == 2
        assert await tx.bump_seqs_txn({first.id: 3, second.id: 1}) == {first.id: 5, second.id: 1}
        assert await tx.bump_seqs_txn({}) == {}
    async with store.read() as reader:
        assert await reader.last_seqs([first.id, second.id]) == {first.id: 5, second.id: 1}


async def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    user, conv = await _conversation(store)
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            seq = await tx.bump_seq_txn(conv.id)
            await tx.insert_messages_txn([_message(user, conv, seq)])
            await tx.append_events_txn([_event(conv, seq)])
            raise RuntimeError("crash before commit")
    async with store.read() as reader:
        assert await reader.history(conv.id) == []
        assert await reader.events_after(conv.id, 0, 10) == []
        assert (await reader.get_conversation(conv.id)).last_seq == 0  # type: ignore[union-attr]


async def test_transact_and_write_blocks_interleave_into_one_gap_free_sequence(store: Store) -> None:
    """transact() is the send path's transaction; write() the other actions'. Both at once, on
    one conversation: every block commits, each seq once, and transact returns work's value."""
    user, conv = await _conversation(store)

    async def in_transact(tx: StoreWriter) -> int:
        seq = await tx.bump_seq_txn(conv.id)
        await tx.insert_messages_txn([_message(user, conv, seq)])
        await tx.append_events_txn([_event(conv, seq)])
        return seq

    async def in_write() -> int:
        async with store.write() as tx:
            return await in_transact(tx)

    seqs = await asyncio.gather(*(store.transact(in_transact) if n % 2 else in_write() for n in range(40)))
    assert sorted(seqs) == list(range(1, 41))
    async with store.read() as reader:
        assert sorted(m.seq for m in await reader.history(conv.id, limit=100)) == list(range(1, 41))


async def test_a_failed_transact_leaves_nothing_behind(store: Store) -> None:
    user, conv = await _conversation(store)
    first = _message(user, conv, 1, client_msg_id="c-1")

    async def store_twice(tx: StoreWriter) -> None:
        seq = await tx.bump_seq_txn(conv.id, 2)
        await tx.insert_messages_txn([first])
        await tx.append_events_txn([_event(conv, seq)])
        await tx.insert_messages_txn([_message(user, conv, 2, client_msg_id="c-1")])

    with pytest.raises(Conflict):
        await store.transact(store_twice)
    async with store.read() as reader:
        assert await reader.history(conv.id) == []
        assert await reader.events_after(conv.id, 0, 10) == []
        assert (await reader.get_conversation(conv.id)).last_seq == 0  # type: ignore[union-attr]

    async def bump(tx: StoreWriter) -> int:
        return await tx.bump_seq_txn(conv.id)

    # No transaction was left open on a pooled connection, holding the conversation's lock:
    # more blocks than the store has writer connections all get through, in order.
    seqs = [await asyncio.wait_for(store.transact(bump), 10) for _ in range(8)]
    assert seqs == list(range(1, 9))


async def test_client_msg_id_is_unique_per_user(store: Store) -> None:
    user, conv = await _conversation(store)
    async with store.write() as tx:
        await tx.insert_messages_txn([_message(user, conv, 1, "same")])
    with pytest.raises(Conflict):
        async with store.write() as tx:
            await tx.insert_messages_txn([_message(user, conv, 2, "same")])
    async with store.read() as reader:
        found = await reader.find_by_client_msg_ids([(user.id, "same")])
    assert found[(user.id, "same")].seq == 1


async def test_client_msg_ids_differing_only_in_case_are_two_messages(store: Store) -> None:
    # The ids are opaque client tokens: MySQL's default case-insensitive collation must not fold them.
    user, conv = await _conversation(store)
    async with store.write() as tx:
        await tx.insert_messages_txn([_message(user, conv, 1, "abc")])
        await tx.insert_messages_txn([_message(user, conv, 2, "ABC")])
    async with store.read() as reader:
        found = await reader.find_by_client_msg_ids([(user.id, "abc"), (user.id, "ABC"), (user.id, "Abc")])
    assert {key: message.seq for key, message in found.items()} == {(user.id, "abc"): 1, (user.id, "ABC"): 2}


async def test_different_emoji_are_different_reactions(store: Store) -> None:
    # utf8mb4_unicode_ci weighs every character beyond the BMP alike: 🍣 = 🍺 there.
    user, conv = await _conversation(store)
    message = _message(user, conv, 1)
    async with store.write() as tx:
        await tx.insert_messages_txn([message])
    async with store.write() as tx:
        added = [await tx.add_reaction_txn(message.id, user.id, emoji) for emoji in ("🍣", "🍺", "Ok", "ok")]
    async with store.read() as reader:
        stored = await reader.get_message(message.id)
    assert added == [True, True, True, True]
    assert stored is not None
    assert sorted(reaction.emoji for reaction in stored.reactions) == sorted(["🍣", "🍺", "Ok", "ok"])
    async with store.write() as tx:
        assert await tx.remove_reaction_txn(message.id, user.id, "🍺")
    async with store.read() as reader:
        stored = await reader.get_message(message.id)
    assert stored is not None
    assert sorted(reaction.emoji for reaction in stored.reactions) == sorted(["🍣", "Ok", "ok"])


async def test_two_writers_racing_for_a_username_get_one_user_and_one_conflict(store: Store) -> None:
    name = f"race{ids.next_id()}"

    async def sign_up() -> None:
        async with store.write() as tx:
            await tx.get_user_credentials(name)  # both find the name free (on MySQL)
            await asyncio.sleep(0.05)
            user = User(id=ids.next_id(), username=name, display_name="R", created_at=_now())
            await tx.create_user_txn(user, "hash")

    results = await asyncio.gather(sign_up(), sign_up(), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "NoneType"], results
    assert [r.code for r in results if isinstance(r, Conflict)] == ["username_taken"]


async def test_two_writers_adding_one_workspace_member_add_it_once(store: Store) -> None:
    _, conv = await _conversation(store)
    user = User(id=ids.next_id(), username=f"u{ids.next_id()}", display_name="U", created_at=_now())
    async with store.write() as tx:
        await tx.create_user_txn(user, "hash")

    async def add() -> bool:
        async with store.write() as tx:
            await tx.get_workspace_member(conv.workspace_id, user.id)
            await asyncio.sleep(0.05)
            return await tx.add_workspace_member_txn(conv.workspace_id, user.id, Role.MEMBER)

    assert sorted(await asyncio.gather(add(), add())) == [False, True]


async def test_sqlite_batch_lookups_search_an_index_not_the_whole_table(tmp_path: Path) -> None:
    """Every write batch looks up its retries and memberships: a scan there makes each send cost
    more as history grows. SQLite's plan for a row-value ``IN`` was exactly that scan."""
    parley = Parley(Settings(data_dir=tmp_path), "tool")
    await parley.start("store")
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if " IN (" in statement and ("messages" in statement or "conversation_members" in statement):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        async with parley.store.read() as reader:
            await reader.find_by_client_msg_ids([(1, "a"), (2, "b")])
            await reader.conversations_with_members([(1, 2), (3, 4)])
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
        await parley.close()
    assert len(seen) == 2
    db = sqlite3.connect(tmp_path / "parley.sqlite3")
    for statement, parameters in seen:
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert "SCAN messages" not in plan and "SCAN conversation_members" not in plan, plan
        assert plan.startswith("SEARCH"), plan


async def test_batch_lookups_answer_only_for_what_exists(store: Store) -> None:
    """The write batch's checks (conversations, memberships, retries) and search's hits, many at once."""
    user, conv = await _conversation(store)
    other, other_conv = await _conversation(store, "random")
    first, second = _message(user, conv, 1, "a"), _message(other, other_conv, 1, "a")
    async with store.write() as tx:
        await tx.insert_messages_txn([first, second])
    missing = ids.next_id()
    async with store.read() as reader:
        messages = await reader.get_messages([first.id, second.id, missing])
        assert await reader.get_messages([]) == {}
        conversations = await reader.get_conversations([conv.id, other_conv.id, missing])
        joined, members = await reader.conversations_with_members(
            [(conv.id, user.id), (conv.id, other.id), (other_conv.id, other.id), (missing, user.id)]
        )
        retries = await reader.find_by_client_msg_ids([(user.id, "a"), (other.id, "a"), (user.id, "b")])
        assert await reader.conversations_with_members([]) == ({}, set())
    assert set(conversations) == {conv.id, other_conv.id}
    assert conversations[conv.id].name == "general"
    assert joined == conversations
    assert members == {(conv.id, user.id), (other_conv.id, other.id)}
    assert set(retries) == {(user.id, "a"), (other.id, "a")}
    assert retries[(user.id, "a")].conversation_id == conv.id
    assert retries[(other.id, "a")].conversation_id == other_conv.id
    assert set(messages) == {first.id, second.id}
    assert messages[second.id].conversation_id == other_conv.id


async def test_channel_names_are_unique_per_workspace(store: Store) -> None:
    _user, conv = await _conversation(store)
    clash = conv.model_copy(update={"id": ids.next_id()})
    with pytest.raises(Conflict):
        async with store.write() as tx:
            await tx.create_conversation_txn(clash, None)


async def test_publishing_marks_rows_and_history_pages_by_seq(store: Store) -> None:
    user, conv = await _conversation(store)
    async with store.write() as tx:
        await tx.bump_seq_txn(conv.id, 5)
        await tx.insert_messages_txn([_message(user, conv, s) for s in range(1, 6)])
        await tx.append_events_txn([_event(conv, s) for s in range(1, 6)])
    async with store.read() as reader:
        rows = [r for r in await reader.unpublished_events(100) if r.conversation_id == conv.id]
        page = await reader.history(conv.id, before_seq=4, limit=2)
        forward = await reader.history(conv.id, after_seq=3)
    assert [m.seq for m in page] == [3, 2] and [m.seq for m in forward] == [4, 5]
    async with store.write() as tx:
        await tx.mark_published_txn([r.id for r in rows])
    async with store.read() as reader:
        assert not [r for r in await reader.unpublished_events(100) if r.conversation_id == conv.id]
        assert len(await reader.events_after(conv.id, 2, 10)) == 3, "published events stay replayable"


async def test_read_markers_only_move_forward_and_drive_unread_counts(store: Store) -> None:
    author, conv = await _conversation(store)
    reader_user = User(id=ids.next_id(), username=f"r{ids.next_id()}", display_name="R", created_at=_now())
    async with store.write() as tx:
        await tx.create_user_txn(reader_user, "hash")
        await tx.add_member_txn(conv.id, reader_user.id, 0)
        await tx.bump_seq_txn(conv.id, 3)
        await tx.insert_messages_txn([_message(author, conv, s) for s in range(1, 4)])
    async with store.read() as reader:
        assert (await reader.unread_counts(reader_user.id))[conv.id] == 3
    async with store.write() as tx:
        assert (await tx.set_read_marker_txn(conv.id, reader_user.id, 2)).last_read_seq == 2
        assert (await tx.set_read_marker_txn(conv.id, reader_user.id, 1)).last_read_seq == 2
    async with store.read() as reader:
        assert (await reader.unread_counts(reader_user.id))[conv.id] == 1


async def test_a_lease_is_exclusive_until_released(store: Store) -> None:
    first = await store.try_lease("contract-test-lease")
    assert first is not None and await first.held()
    if getattr(store, "is_sqlite", False):
        await first.release()
        return  # one process owns the embedded store: there is no second holder to refuse
    assert await store.try_lease("contract-test-lease") is None
    await first.release()
    second = await store.try_lease("contract-test-lease")
    assert second is not None
    await second.release()


async def test_pruning_removes_only_published_events_older_than_the_cutoff(store: Store) -> None:
    user, conv = await _conversation(store)
    async with store.write() as tx:
        await tx.bump_seq_txn(conv.id, 3)
        await tx.append_events_txn([_event(conv, s) for s in range(1, 4)])
    async with store.read() as reader:
        rows = [r for r in await reader.unpublished_events(100) if r.conversation_id == conv.id]
    async with store.write() as tx:
        await tx.mark_published_txn([rows[0].id, rows[1].id])
    async with store.write() as tx:
        assert await tx.prune_events_txn(datetime.now(UTC) - timedelta(hours=1)) == 0
    async with store.write() as tx:
        assert await tx.prune_events_txn(datetime.now(UTC) + timedelta(seconds=1)) >= 2
    async with store.read() as reader:
        assert await reader.oldest_event_seq(conv.id) == 3, "the unpublished row stays"
    _ = user


async def test_embedded_transact_refuses_a_block_that_awaits_anything_else(tmp_path: Path) -> None:
    """The embedded store runs transact() on its database thread, where no event loop turns: a
    block that sleeps (or awaits other I/O) is a bug, refused loudly and rolled back."""
    parley = Parley(Settings(data_dir=tmp_path), "tool")
    await parley.start("store")
    try:
        _, conv = await _conversation(parley.store)

        async def sleeps(tx: StoreWriter) -> None:
            await tx.bump_seq_txn(conv.id)
            await asyncio.sleep(0)  # yields to the loop: there is none on the database thread

        with pytest.raises(RuntimeError, match="awaited something other"):
            await parley.store.transact(sleeps)
        async with parley.store.read() as reader:
            assert (await reader.get_conversation(conv.id)).last_seq == 0  # type: ignore[union-attr]
    finally:
        await parley.close()


async def test_a_commit_feed_announces_each_committed_outbox_row_once_in_commit_order(store: Store) -> None:
    feed = store.commit_feed()
    if feed is None:
        # Only a store written by this process alone may offer one (SQLite); MySQL is shared.
        assert not isinstance(store, SqlStore) or not store.is_sqlite
        return
    _, conv = await _conversation(store)
    async with store.write() as tx:  # write() ...
        await tx.bump_seq_txn(conv.id, 2)
        await tx.append_events_txn([_event(conv, 1), _event(conv, 2)])
    with pytest.raises(RuntimeError):
        async with store.write() as tx:  # ... a rollback announces nothing ...
            await tx.bump_seq_txn(conv.id)
            await tx.append_events_txn([_event(conv, 3)])
            raise RuntimeError("abort")

    async def third(tx: StoreWriter) -> None:  # ... and transact()
        await tx.bump_seq_txn(conv.id)
        await tx.append_events_txn([_event(conv, 3)])

    await store.transact(third)
    announced, overflowed = feed.take()
    async with store.read() as reader:
        table = [r for r in await reader.unpublished_events(100) if r.conversation_id == conv.id]
    assert not overflowed
    assert [(r.id, r.payload) for r in announced] == [(r.id, r.payload) for r in table]
    assert [orjson.loads(r.payload)["seq"] for r in announced] == [1, 2, 3]
    assert feed.take() == ([], False), "each row is announced once"


async def test_on_commit_listeners_hear_each_committed_transaction_s_rows_once_in_order(store: Store) -> None:
    heard: list[list[CommittedEvent]] = []
    store.on_commit(lambda rows: heard.append(list(rows)))
    _, conv = await _conversation(store)
    heard.clear()  # the conversation's own set-up wrote no outbox row, but be exact
    async with store.write() as tx:  # write() ...
        await tx.bump_seq_txn(conv.id, 2)
        await tx.append_events_txn([_event(conv, 1), _event(conv, 2)])
    with pytest.raises(RuntimeError):
        async with store.write() as tx:  # ... a rollback tells nothing ...
            await tx.bump_seq_txn(conv.id)
            await tx.append_events_txn([_event(conv, 3)])
            raise RuntimeError("abort")

    async def third(tx: StoreWriter) -> None:  # ... and transact()
        await tx.bump_seq_txn(conv.id)
        await tx.append_events_txn([_event(conv, 3)])

    await store.transact(third)
    async with store.write() as tx:  # a transaction without outbox rows tells nothing
        await tx.bump_seq_txn(conv.id)
    async with store.read() as reader:
        table = [r for r in await reader.unpublished_events(100) if r.conversation_id == conv.id]
    assert [[(r.conversation_id, r.seq) for r in rows] for rows in heard] == [
        [(conv.id, 1), (conv.id, 2)],
        [(conv.id, 3)],
    ]
    told = [r for rows in heard for r in rows]
    assert [(r.seq, r.payload) for r in told] == [(r.seq, r.payload) for r in table]
    assert all(r.created_at is not None and r.created_at.tzinfo is not None for r in told)


async def test_marking_by_seq_range_marks_exactly_that_range(store: Store) -> None:
    _, conv = await _conversation(store)
    _, other = await _conversation(store, "random")
    async with store.write() as tx:
        await tx.append_events_txn([_event(conv, seq) for seq in range(1, 7)])
        await tx.append_events_txn([_event(other, seq) for seq in range(1, 4)])
    async with store.write() as tx:
        await tx.mark_published_seqs_txn({conv.id: (2, 4), other.id: (3, 3)})
    async with store.read() as reader:
        left = [(r.conversation_id, r.seq) for r in await reader.unpublished_events(100)]
    assert [s for c, s in left if c == conv.id] == [1, 5, 6]
    assert [s for c, s in left if c == other.id] == [1, 2]


async def _outbox_of_published_rows(store: Store, rows: int = 2000) -> Conversation:
    """An outbox as a running relay leaves it: many rows, all published."""
    _, conv = await _conversation(store)
    async with store.write() as tx:
        await tx.append_events_txn([_event(conv, seq) for seq in range(1, rows + 1)])
    async with store.read() as reader:
        published = [r.id for r in await reader.unpublished_events(rows)]
    async with store.write() as tx:
        await tx.mark_published_txn(published)
    return conv


async def _assert_uses_index(store: Store, statement_start: str, run: Any, index: str) -> None:
    """Run ``run()`` and check, on the engine itself, that the statement starting with
    ``statement_start`` it executed goes through ``index`` (EXPLAIN after fresh statistics on
    MariaDB, whose InnoDB refreshes them in the background; EXPLAIN QUERY PLAN on SQLite)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith(statement_start):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        await run()
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    (statement, parameters), *_ = seen
    assert isinstance(store, SqlStore)
    if store.is_sqlite:
        db = sqlite3.connect(store.url.split("///", 1)[1])
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert index in plan, plan
        return
    async with store.read() as reader:
        await reader._c.exec_driver_sql("ANALYZE TABLE outbox")  # type: ignore[attr-defined]
        explained = await reader._c.exec_driver_sql(f"EXPLAIN {statement}", parameters)  # type: ignore[attr-defined]
        rows = [dict(row._mapping) for row in explained]
    assert [row["key"] for row in rows] == [index], rows


@pytest.mark.parametrize("skipping_in_flight", [False, True], ids=["all", "skipping-in-flight"])
async def test_the_relays_read_of_unpublished_rows_searches_an_index(
    store: Store, skipping_in_flight: bool
) -> None:
    """The outbox keeps every published row for replay (hours of them), so the relay's read of
    what is left to publish must find it through the (published, id) index, not by walking the
    table — also when it skips rows it published whose marks have not committed yet."""
    conv = await _outbox_of_published_rows(store)
    async with store.write() as tx:
        await tx.append_events_txn([_event(conv, seq) for seq in range(2001, 2004)])
    async with store.read() as reader:
        unpublished = [r.id for r in await reader.unpublished_events(500)]
    in_flight = unpublished[:1] if skipping_in_flight else []

    async def read() -> None:
        async with store.read() as reader:
            rows = await reader.unpublished_events(500, in_flight)
        assert [r.id for r in rows] == unpublished[len(in_flight) :]

    await _assert_uses_index(store, "SELECT outbox.id", read, "ix_outbox_unpublished")


async def test_pruning_finds_old_published_rows_through_an_index(store: Store) -> None:
    """The relay prunes every ten minutes; only the rows past the retention may be visited."""
    await _outbox_of_published_rows(store)

    async def prune() -> None:
        await store.transact(lambda tx: tx.prune_events_txn(_now() - timedelta(hours=1)))

    await _assert_uses_index(store, "DELETE FROM outbox", prune, "ix_outbox_published_age")
