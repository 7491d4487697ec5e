"""The cluster's relay publishes what the writers announce over pub/sub, without reading it back.

What a user relies on is unchanged: every committed row is published, each conversation's in
seq order, and nothing twice while the relay runs. These tests take the announcements into
their own hands (what a writer node sends, in whatever order or not at all) and check that a
row out of turn or never announced still comes out, in order, from the table — on the embedded
engines and on the real ones (MariaDB, Redis, Kafka).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from parley.composition import Parley
from parley.domain.events import Event, EventType
from parley.domain.models import Conversation, ConversationKind
from parley.ids import IdGenerator
from parley.ports.eventlog import LogConsumer
from parley.ports.pubsub import RELAY_WAKEUP_CHANNEL
from parley.ports.store import CommittedEvent, Store, StoreWriter
from parley.runtime import commit_announcements
from parley.runtime import relay as relay_module
from parley.runtime.published_seqs import PublishedSeqs
from parley.runtime.relay import OutboxRelay
from parley.settings import Settings
from tests.support.engines import engine_overrides

ids = IdGenerator(96)
DEADLINE = 20.0


# -- the pieces -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    conversation_id: int
    seq: int


def test_only_the_next_seq_of_a_known_conversation_is_ready() -> None:
    seqs = PublishedSeqs()
    seqs.advance([Row(1, 4), Row(2, 9)])
    ready, blocked = seqs.split([Row(1, 5), Row(1, 7), Row(1, 6), Row(2, 9), Row(3, 1), Row(4, 2), Row(3, 2)])
    assert ready == [Row(1, 5), Row(1, 6), Row(3, 1), Row(3, 2)], "next ones; seq 1 opens a conversation"
    assert blocked == [Row(1, 7), Row(4, 2)], "after a gap; a conversation not known here"
    assert seqs.published(Row(2, 9)) and not seqs.published(Row(1, 5)), "split publishes nothing"


def test_forgotten_conversations_are_only_slower() -> None:
    seqs = PublishedSeqs(max_conversations=2)
    seqs.advance([Row(1, 1), Row(2, 1), Row(3, 1)])
    assert seqs.split([Row(1, 2)]) == ([], [Row(1, 2)]), "the oldest was forgotten: to the table"
    assert seqs.split([Row(3, 2)]) == ([Row(3, 2)], [])


def test_announcements_carry_rows_as_committed_and_anything_else_is_a_plain_wakeup() -> None:
    at = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    rows = [CommittedEvent(7, 3, b'{"seq":3}', "req-1", at), CommittedEvent(8, 1, b"{}", None, at)]
    assert commit_announcements.decode(commit_announcements.encode(rows)) == rows
    assert commit_announcements.decode(commit_announcements.PLAIN_WAKEUP) is None
    assert commit_announcements.decode(b"\xc1 not msgpack") is None
    assert commit_announcements.decode(commit_announcements.encode([]) + b"x") is None


# -- the relay --------------------------------------------------------------------------------
class CountingReads:
    """The store, counting the relay's table reads (``query``) and able to hold its marks
    (``transact``) until released."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0
        self.marks_allowed = asyncio.Event()
        self.marks_allowed.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def query(self, work: Any) -> Any:
        self.reads += 1
        return await self._store.query(work)

    async def transact(self, work: Any) -> Any:
        await self.marks_allowed.wait()
        return await self._store.transact(work)


@dataclass
class Cluster:
    """A writer node (its commits, their announcements in the test's hands) and a relay."""

    parley: Parley
    store: CountingReads
    reader: LogConsumer
    conversation: int = field(default_factory=ids.next_id)
    seq: int = 0
    heard: list[list[CommittedEvent]] = field(default_factory=list)

    async def commit(self, count: int = 1) -> list[CommittedEvent]:
        """``count`` outbox rows of the conversation in one transaction; returns what the store
        told its ``on_commit`` listeners (not announced yet)."""
        first, self.seq = self.seq + 1, self.seq + count
        events = [_event(self.conversation, s) for s in range(first, self.seq + 1)]

        async def work(tx: StoreWriter) -> None:
            await tx.bump_seq_txn(self.conversation, count)
            await tx.append_events_txn(events)

        await self.parley.store.transact(work)
        return self.heard.pop()

    async def announce(self, rows: Sequence[CommittedEvent]) -> None:
        await self.parley.pubsub.publish(RELAY_WAKEUP_CHANNEL, commit_announcements.encode(rows))

    async def published(self, count: int) -> list[int]:
        """Seqs read from the log until ``count`` distinct ones arrived (duplicates kept), then
        whatever else arrives within a moment (a duplicate would)."""
        seqs: list[int] = []
        give_up = asyncio.get_running_loop().time() + DEADLINE
        while len(set(seqs)) < count:
            assert asyncio.get_running_loop().time() < give_up, f"{len(set(seqs))} of {count} published"
            seqs += [
                orjson.loads(r.value)["seq"] for r in await self.reader.poll(max_records=500, timeout=0.2)
            ]
        seqs += [orjson.loads(r.value)["seq"] for r in await self.reader.poll(max_records=500, timeout=0.5)]
        return seqs


def _event(conversation_id: int, seq: int) -> Event:
    return Event(
        type=EventType.MESSAGE_CREATED,
        event_id=ids.next_id(),
        workspace_id=1,
        conversation_id=conversation_id,
        seq=seq,
        ts=datetime.now(UTC),
        data={"message": {}},
    )


async def _conversation_row(parley: Parley, conversation_id: int) -> None:
    conversation = Conversation(
        id=conversation_id,
        workspace_id=1,
        kind=ConversationKind.PUBLIC,
        name=f"c{conversation_id}",
        created_by=1,
        created_at=datetime.now(UTC),
        last_seq=0,
    )
    async with parley.store.write() as tx:  # its row is what bump_seq_txn locks
        await tx.create_conversation_txn(conversation, None)


@pytest.fixture(params=["embedded", "engines"])
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    # No safety-net reads during a test unless it asks for one: what it counts are the reads
    # the announcements cause.
    monkeypatch.setattr(relay_module, "LEASE_CHECK_INTERVAL", 3600.0)
    if request.param == "embedded":
        async for running in _cluster(Settings(data_dir=tmp_path)):
            yield running
        return
    with engine_overrides() as overrides:
        async for running in _cluster(Settings(data_dir=tmp_path, **overrides)):
            yield running


async def _cluster(settings: Settings) -> AsyncIterator[Cluster]:
    parley = Parley(settings, "tool")  # a role that announces nothing: the test does
    await parley.start("store", "event_log", "pubsub")
    reader = parley.event_log.consumer(settings.events_topic, "relay-announcements-test")
    await reader.start()
    running = Cluster(parley, CountingReads(parley.store), reader)
    parley.store.on_commit(lambda rows: running.heard.append(list(rows)))
    await _conversation_row(parley, running.conversation)
    try:
        yield running
    finally:
        await reader.close()
        await parley.close()


@pytest.fixture
async def relay(cluster: Cluster) -> AsyncIterator[OutboxRelay]:
    """A relay that has caught up with the table and follows the announcements; its quiet
    poll is long, so a table read in a test is one the announcements caused."""
    relay = OutboxRelay(
        cluster.store,  # type: ignore[arg-type]
        cluster.parley.event_log,
        cluster.parley.pubsub,
        topic=cluster.parley.settings.events_topic,
        poll_interval=3600.0,
        follow_announcements=True,
    )
    await cluster.commit(1)  # announced by nobody: the first pass reads the table
    relay.start()
    try:
        assert await cluster.published(1) == [1]
        await _until(lambda: relay._following_announcements)
        yield relay
    finally:
        await relay.stop()


async def _until(predicate: Any, timeout: float = DEADLINE) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_announced_rows_are_published_in_order_without_reading_them_back(
    cluster: Cluster, relay: OutboxRelay
) -> None:
    reads = cluster.store.reads
    for n in range(30):
        await cluster.announce(await cluster.commit(1 + n % 3))
    assert await cluster.published(cluster.seq - 1) == list(range(2, cluster.seq + 1)), "each once, in order"
    assert cluster.store.reads == reads, "no table read"

    async def all_marked() -> bool:
        async with cluster.parley.store.read() as reader:
            return not [
                r for r in await reader.unpublished_events(1000) if r.conversation_id == cluster.conversation
            ]

    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not await all_marked():  # by seq range, in the background
        assert asyncio.get_running_loop().time() < deadline, "announced rows never marked published"
        await asyncio.sleep(0.05)


async def test_a_row_announced_out_of_turn_sends_the_relay_to_the_table_and_nothing_repeats(
    cluster: Cluster, relay: OutboxRelay
) -> None:
    older = await cluster.commit(2)  # node A commits seqs 2-3 and is slow to say so
    newer = await cluster.commit(1)  # node B commits seq 4 and says so first
    reads = cluster.store.reads
    await cluster.announce(newer)
    assert await cluster.published(3) == [2, 3, 4], "the gap's rows from the table, then 4, once each"
    assert cluster.store.reads > reads
    await cluster.announce(older)  # already out: dropped
    await cluster.announce(await cluster.commit(1))
    assert await cluster.published(1) == [5]


async def test_a_row_never_announced_comes_out_with_the_quiet_poll_s_read(
    cluster: Cluster, relay: OutboxRelay
) -> None:
    relay._poll_interval = 0.1
    await cluster.announce([])  # wakes the relay into its (now short) quiet poll
    await cluster.commit(1)  # its announcement lost
    assert await cluster.published(1) == [2], "read by the quiet poll"


async def test_a_plain_wakeup_reads_the_table(cluster: Cluster, relay: OutboxRelay) -> None:
    await cluster.commit(1)  # committed by a process that only wakes the relay
    await cluster.parley.pubsub.publish(RELAY_WAKEUP_CHANNEL, commit_announcements.PLAIN_WAKEUP)
    assert await cluster.published(1) == [2]


async def test_rows_published_from_announcements_and_not_marked_are_not_read_again(
    cluster: Cluster, relay: OutboxRelay
) -> None:
    cluster.store.marks_allowed.clear()  # the marks stall: the rows stay unpublished in the table
    await cluster.announce(await cluster.commit(3))
    assert await cluster.published(3) == [2, 3, 4]
    unannounced = await cluster.commit(1)  # then a table read, which meets 2-4 unmarked
    await cluster.parley.pubsub.publish(RELAY_WAKEUP_CHANNEL, commit_announcements.PLAIN_WAKEUP)
    assert await cluster.published(1) == [5], "2-4 are not published again"
    assert unannounced[0].seq == 5
    cluster.store.marks_allowed.set()


async def test_a_wakeup_from_its_own_process_reads_the_table(cluster: Cluster, relay: OutboxRelay) -> None:
    """The all-in-one on MySQL wakes its relay directly after a commit, announcing nothing."""
    await cluster.commit(1)
    assert relay.wake_if_active()
    assert await cluster.published(1) == [2]
