"""The all-in-one's relay follows the store's commit feed (embedded SQLite): what it publishes
must be what the outbox table holds — every row, in commit order — whichever way it learnt of
them: from the table at start, from the feed, or from the table again after a failure, an
overflow or a row the feed never announced. And without a feed (the cluster's relay reads the
table), a commit that wakes the relay during a pass is published by the next pass at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from parley.composition import Parley
from parley.domain.events import Event, EventType
from parley.ids import IdGenerator
from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord
from parley.ports.store import CommitFeed, Store, StoreWriter
from parley.runtime import relay as relay_module
from parley.runtime.relay import OutboxRelay
from parley.settings import Settings

ids = IdGenerator(97)
CONVERSATION = 4242
DEADLINE = 20.0


class FailingOnce:
    """The real event log, except that one publish fails (an outage) before reaching it."""

    def __init__(self, log: EventLog, fail_on_call: int) -> None:
        self._log = log
        self._calls = 0
        self._fail_on_call = fail_on_call

    async def publish(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        self._calls += 1
        if self._calls == self._fail_on_call:
            raise ConnectionError("event log unreachable (injected)")
        await self._log.publish(topic, records)


@dataclass
class Running:
    parley: Parley
    store: Store
    feed: CommitFeed
    reader: LogConsumer
    seq: int = 0

    async def commit(self, count: int = 1, *, via_transact: bool = False) -> None:
        """``count`` outbox rows of the conversation in one transaction."""
        first = self.seq + 1
        self.seq += count
        events = [_event(s) for s in range(first, self.seq + 1)]

        async def work(tx: StoreWriter) -> None:
            await tx.append_events_txn(events)

        if via_transact:
            await self.store.transact(work)
        else:
            async with self.store.write() as tx:
                await work(tx)

    async def published_seqs(self, count: int) -> list[int]:
        """Seqs read from the log until ``count`` distinct ones arrived (duplicates kept)."""
        seqs: list[int] = []
        give_up = asyncio.get_running_loop().time() + DEADLINE
        while len(set(seqs)) < count:
            assert asyncio.get_running_loop().time() < give_up, f"{len(set(seqs))} of {count} published"
            for record in await self.reader.poll(max_records=500, timeout=0.2):
                seqs.append(orjson.loads(record.value)["seq"])
        return seqs

    async def unmarked(self) -> int:
        async with self.store.read() as reader:
            return len(await reader.unpublished_events(1000))


def _event(seq: int) -> Event:
    return Event(
        type=EventType.MESSAGE_CREATED,
        event_id=ids.next_id(),
        workspace_id=1,
        conversation_id=CONVERSATION,
        seq=seq,
        ts=datetime.now(UTC),
        data={"message": {}},
    )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    parley = Parley(Settings(data_dir=tmp_path), "allinone")
    await parley.start("store", "event_log", "pubsub")
    feed = parley.store.commit_feed()
    assert feed is not None, "the embedded store offers a commit feed"
    reader = parley.event_log.consumer(parley.settings.events_topic, "relay-feed-test")
    await reader.start()
    yield Running(parley, parley.store, feed, reader)
    await reader.close()
    await parley.close()


class CommitDuringTheFirstRead:
    """The store, except that a commit lands while the relay reads the table: after it took
    the feed, before its read's snapshot — so the read and the feed both hold those rows."""

    def __init__(self, running: Running) -> None:
        self._running = running
        self._store = running.store
        self.done = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def query(self, work: Any) -> Any:
        if not self.done:
            self.done = True
            await self._running.commit(2)
        return await self._store.query(work)


def _relay(running: Running, log: object | None = None, store: object | None = None) -> OutboxRelay:
    return OutboxRelay(
        store or running.store,  # type: ignore[arg-type]
        log or running.parley.event_log,  # type: ignore[arg-type]
        running.parley.pubsub,
        topic=running.parley.settings.events_topic,
        poll_interval=0.05,
        feed=running.feed,
    )


async def _until_all_marked(running: Running) -> None:
    async def all_marked() -> bool:
        return await running.unmarked() == 0

    await _until(all_marked)


@asynccontextmanager
async def _following_the_feed(
    running: Running, *, batch_size: int | None = None
) -> AsyncIterator[OutboxRelay]:
    """A started relay that has caught up with the table and publishes from the feed."""
    relay = _relay(running)
    if batch_size is not None:
        relay._batch_size = batch_size
    relay.start()
    try:
        await running.commit(1)
        assert await running.published_seqs(1) == [running.seq]
        yield relay
    finally:
        await relay.stop()


def _relay_ages_observed() -> float:
    return REGISTRY.get_sample_value("parley_event_age_seconds_count", {"hop": "relay"}) or 0.0


async def _until(predicate: object, timeout: float = DEADLINE) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_rows_from_before_the_start_then_new_commits_are_published_once_in_order(
    running: Running,
) -> None:
    await running.commit(3)  # left over from "a previous run": only the table knows them
    aged_before = _relay_ages_observed()
    relay = _relay(running)
    relay.start()
    try:
        # Commits keep coming while the relay catches up and switches to the feed.
        for n in range(40):
            await running.commit(1 + n % 3, via_transact=n % 2 == 0)
            if n % 5 == 0:
                await asyncio.sleep(0)
        seqs = await running.published_seqs(running.seq)
        assert seqs == list(range(1, running.seq + 1)), "every row once, in commit order"

        # The relay hop's age (parley_event_age_seconds{hop="relay"}): once per published row,
        # observed when the publish returns (a reader may see the records a moment earlier).
        async def all_aged() -> bool:
            return _relay_ages_observed() - aged_before >= running.seq

        await _until(all_aged)
        assert _relay_ages_observed() - aged_before == running.seq

        await _until_all_marked(running)  # marked in the background
    finally:
        await relay.stop()


async def test_rows_both_read_from_the_table_and_announced_are_published_once(running: Running) -> None:
    await running.commit(3)
    store = CommitDuringTheFirstRead(running)
    relay = _relay(running, store=store)
    relay.start()
    try:
        assert await running.published_seqs(5) == [1, 2, 3, 4, 5]
        assert store.done
        await running.commit(1)
        assert await running.published_seqs(1) == [6], "no duplicate of 4 and 5 from the feed"
    finally:
        await relay.stop()


async def test_a_failed_publish_hands_over_to_the_table_and_loses_nothing(running: Running) -> None:
    relay = _relay(running, FailingOnce(running.parley.event_log, fail_on_call=3))
    relay.start()
    try:
        for _ in range(12):
            await running.commit(2)
            await asyncio.sleep(0.02)  # separate publishes, so one of the feed's fails
        seqs = await running.published_seqs(running.seq)
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == list(range(1, running.seq + 1)), "nothing lost, order kept"
    finally:
        await relay.stop()


async def test_an_overflowing_feed_sends_the_relay_to_the_table(running: Running) -> None:
    running.feed.MAX_ROWS = 5
    async with _following_the_feed(running):
        await running.commit(20)  # more than the feed keeps: it drops them and says so
        assert await running.published_seqs(20) == list(range(2, 22))


async def test_a_row_the_feed_never_announced_is_published_by_the_safety_net(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "LEASE_CHECK_INTERVAL", 0.2)
    async with _following_the_feed(running):
        await running.commit(1)
        running.feed.take()  # lost before the relay looked: as if never announced
        assert await running.published_seqs(1) == [2]


async def test_large_feeds_are_published_in_batches_and_marked_in_chunks(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "MARK_CHUNK", 7)
    async with _following_the_feed(running, batch_size=10):
        await running.commit(45)  # one commit: 5 publishes of up to 10 rows, marks in chunks of 7
        assert await running.published_seqs(45) == list(range(2, 47))
        await _until_all_marked(running)


class CommitDuringPublish:
    """The event log, except that during the first publish a commit lands and wakes the relay,
    as a writer does after each commit (over pub/sub in a cluster)."""

    def __init__(self, running: Running) -> None:
        self._running = running
        self.relay: OutboxRelay | None = None
        self.done = False

    async def publish(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        if not self.done and self.relay is not None:
            self.done = True
            await self._running.commit(1)
            self.relay.wake()
        await self._running.parley.event_log.publish(topic, records)


async def test_a_commit_during_a_table_pass_is_published_without_waiting_for_the_poll(
    running: Running,
) -> None:
    log = CommitDuringPublish(running)
    relay = OutboxRelay(
        running.store,
        log,  # type: ignore[arg-type]
        running.parley.pubsub,
        topic=running.parley.settings.events_topic,
        poll_interval=60.0,  # only a wake-up can start the next pass in time
    )  # no feed: the table mode of the cluster's relay
    log.relay = relay
    await running.commit(1)
    relay.start()
    try:
        assert await asyncio.wait_for(running.published_seqs(2), timeout=5) == [1, 2]
        assert log.done
    finally:
        await relay.stop()


class MarksHeldBack:
    """The store, except that the relay's mark transactions wait until ``release`` is set: a
    store writer busy elsewhere, or a slow round trip."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.marks_waiting = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def transact(self, work: Any) -> Any:
        self.marks_waiting += 1
        await self.release.wait()
        self.marks_waiting -= 1
        return await self._store.transact(work)


async def test_a_table_pass_waits_neither_for_the_last_pass_marks_nor_republishes_its_rows(
    running: Running,
) -> None:
    store = MarksHeldBack(running.store)
    relay = OutboxRelay(
        store,  # type: ignore[arg-type]
        running.parley.event_log,
        running.parley.pubsub,
        topic=running.parley.settings.events_topic,
        poll_interval=0.05,
    )  # no feed: the table mode of the cluster's relay
    relay.start()
    try:
        await running.commit(1)
        assert await running.published_seqs(1) == [1]
        await running.commit(2)
        # Row 1's mark has not committed: the table still shows it unpublished.
        assert await running.published_seqs(2) == [2, 3]
        assert store.marks_waiting >= 1 and await running.unmarked() == 3
        store.release.set()
        await _until_all_marked(running)
        await running.commit(1)
        assert await running.published_seqs(1) == [4], "nothing published twice"
    finally:
        store.release.set()
        await relay.stop()
