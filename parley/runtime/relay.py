"""The outbox relay: moves committed outbox rows to the event log, in order.

Guarantee: every committed outbox row is published at least once; rows are published in
outbox id order, which within one conversation is seq order (the conversation lock orders
them), and keyed by conversation id, so each conversation's events keep their order in one
partition. Rows are marked published in the background, in publish order and at most
``MARK_INTERVAL`` behind, so a pass does not wait for the previous one's mark (a round trip to
the store); a read skips what was published and is not marked yet. A crash between publish and
mark republishes those rows: consumers are idempotent. A failed publish marks nothing: the next
pass publishes the same rows again, which relies on the event log's promise that a failed
publish does not make the next one fail (the Kafka adapter replaces its idempotent producer
after a failure, see ``KafkaEventLog.publish``).
Actions wake the relay after each commit (``RELAY_WAKEUP_CHANNEL``) so the usual latency is one
round trip, with a poll as the safety net.

Following announcements (the cluster): the wake-up carries the committed rows
(``commit_announcements``), and the relay publishes an announced row without reading it back
when it is the next seq of its conversation after what this relay published (``PublishedSeqs``).
An announced row after a gap (another node's older commit announced later, or an announcement
lost), or of a conversation this relay has not published yet, sends it to the table: one read
publishes everything committed in order, and announced rows published meanwhile are skipped.
A table read also follows any plain wake-up, a quiet poll interval, every lease check (a safety
net for lost announcements) and a lost subscription; rows published from announcements are
marked by conversation and seq range.

Following the commit feed (the all-in-one): when the relay shares its process with every writer
of the store (embedded SQLite), the store announces each commit's outbox rows in commit order
(``CommitFeed``) and the relay publishes them from there, without reading them back from the
table, and marks them published in the background, in publish order. It reads the table
instead at start (rows left by a previous run), after any failed publish (the rows are still
unmarked there), when the feed overflowed, and when an unpublished row stays at the head of the
table across two checks (a safety net). Marks follow publish order, so after a crash the
unmarked rows are a suffix of what was published, republished in order.

Several relay processes may run: one holds the ``parley-outbox-relay`` lease (a MySQL named
lock) and publishes; the others wait and take over within a second of its death. A single
active publisher is what keeps each conversation's order — competing publishers (e.g. with
``SKIP LOCKED``) could interleave two batches of one conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from parley.ports.eventlog import EventLog, OutgoingRecord
from parley.ports.pubsub import RELAY_WAKEUP_CHANNEL, PubSub
from parley.ports.store import CommitFeed, CommittedEvent, Lease, OutboxRow, Store, StoreWriter
from parley.runtime import commit_announcements, metrics
from parley.runtime.background import run_when_due
from parley.runtime.published_seqs import PublishedSeqs
from parley.tracing import REQUEST_ID_HEADER

log = logging.getLogger(__name__)
LEASE_NAME = "parley-outbox-relay"
LEASE_CHECK_INTERVAL = 2.0
PRUNE_INTERVAL = 600.0
# Marks of published rows are gathered for this long into one transaction: they do not delay
# delivery, but each one takes a turn of a store writer.
MARK_INTERVAL = 0.1
# At most this many ids per mark transaction (SQLite takes at most 32,766 bound parameters);
# as many published and unmarked make the next read wait for their marks.
MARK_CHUNK = 5_000
# Announced rows held between two passes at most; past it they are dropped for a table read.
MAX_ANNOUNCED = 50_000


class OutboxRelay:
    def __init__(
        self,
        store: Store,
        event_log: EventLog,
        pubsub: PubSub,
        *,
        topic: str,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        retention: timedelta = timedelta(hours=72),
        feed: CommitFeed | None = None,
        follow_announcements: bool = False,
    ) -> None:
        self._store = store
        self._log = event_log
        self._pubsub = pubsub
        self._topic = topic
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.active = False
        self._retention = retention
        self._next_prune = 0.0
        self._feed = feed
        self._following_feed = False
        # Ids the last table pass published: their commits may be announced on the feed too.
        self._from_table: set[int] = set()
        # Published, not yet marked: one list per publish, in publish order.
        self._unmarked: list[list[int]] = []
        self._marks_due = asyncio.Event()
        self._marking = asyncio.Lock()
        self._stale_suspect: int | None = None
        # Following announcements: what arrived since the last pass, what this relay published
        # per conversation, and the seq ranges published from announcements and not yet marked.
        self._follow_announcements = follow_announcements and feed is None
        self._following_announcements = False
        self._subscribed = False
        self._table_due = True
        self._announced: list[CommittedEvent] = []
        self._seqs = PublishedSeqs()
        self._unmarked_seqs: dict[int, tuple[int, int]] = {}
        if feed is not None:
            feed.on_announce(self._wake.set)

    def wake(self) -> None:
        """A commit in this process: its rows are in the table (or on the commit feed)."""
        self._table_due = True
        self._wake.set()

    def wake_if_active(self) -> bool:
        """Wake this relay if it is the active publisher; False when it is on standby."""
        if self.active:
            self.wake()
        return self.active

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="outbox-relay"),
            asyncio.create_task(self._listen_for_wakeups(), name="outbox-relay-wakeups"),
        ]
        marks = run_when_due(
            self._marks_due, self._flush_marks, interval=MARK_INTERVAL, what="marking published outbox rows"
        )
        self._tasks.append(asyncio.create_task(marks, name="outbox-relay-marks"))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush_marks()  # what is left unmarked is republished after a restart

    async def _listen_for_wakeups(self) -> None:
        while True:
            sub = self._pubsub.subscription()
            try:
                await sub.subscribe(RELAY_WAKEUP_CHANNEL)
                self._subscribed = True
                async for _, message in sub.messages():
                    self._heard(message)
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay wake-up channel lost; polling only, retrying in 1 s", exc_info=True)
                await asyncio.sleep(1)
            finally:
                # What was announced while nobody listened is only in the table.
                self._subscribed, self._table_due = False, True
                await sub.close()

    def _heard(self, message: bytes) -> None:
        if not (self._follow_announcements and self.active):
            return
        rows = commit_announcements.decode(message)
        if rows is None:
            self._table_due = True  # a plain wake-up: its commit's rows are only in the table
        elif len(self._announced) + len(rows) > MAX_ANNOUNCED:
            self._announced, self._table_due = [], True
        else:
            self._announced.extend(rows)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                lease = await self._store.try_lease(LEASE_NAME)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay lease unavailable (store down?); retrying", exc_info=True)
                lease = None
            if lease is None:
                self.active = False
                await asyncio.sleep(1.0)  # standby: another relay is active
                continue
            log.info("this relay is now the active publisher")
            self.active = True
            try:
                await self._publish_while_held(lease)
            finally:
                self.active = False
                await lease.release()

    async def _publish_while_held(self, lease: Lease) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + LEASE_CHECK_INTERVAL
        self._following_feed = False  # a new holder reads the table first
        self._following_announcements, self._table_due = False, True
        self._announced, self._seqs = [], PublishedSeqs()
        while not self._stopping:
            if loop.time() >= next_check:
                if not await lease.held():
                    log.warning("relay lease lost; standing by")
                    return
                next_check = loop.time() + LEASE_CHECK_INTERVAL
                await self._prune_if_due(loop.time())
                await self._check_feed_is_complete()
                self._table_due = True  # safety net: an announcement may have been lost
            # Cleared before the pass, not after: a commit announced during the pass (after its
            # read) leaves the wake-up set, and the next pass starts at once.
            self._wake.clear()
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except ConnectionError as error:
                # An engine is unreachable (an outage, not a bug): one line per retry, no trace.
                log.warning("relay pass failed, engine unreachable (%s); retrying", error)
                await asyncio.sleep(min(1.0, self._poll_interval * 5))
                continue
            except Exception:
                log.exception("relay pass failed; retrying")
                await asyncio.sleep(min(1.0, self._poll_interval * 5))
                continue
            if published >= self._batch_size:
                continue  # more waiting: no sleep
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
            except TimeoutError:
                self._table_due = True  # quiet: the poll reads the table

    async def _prune_if_due(self, now: float) -> None:
        """Published rows past the retention leave the outbox (and the resumable stream: a
        client further behind gets ``resync``). Only the active relay prunes."""
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        try:
            older_than = datetime.now(UTC) - self._retention
            pruned = await self._store.transact(lambda tx: tx.prune_events_txn(older_than))
            if pruned:
                log.info("pruned %d published outbox rows older than %s", pruned, self._retention)
        except Exception:
            log.warning("outbox pruning failed; will retry", exc_info=True)

    async def publish_pending(self) -> int:
        """One pass: from the commit feed or the announcements when following them, else from
        the outbox table."""
        if self._following_feed:
            return await self._publish_from_feed()
        if self._following_announcements and not self._table_due:
            return await self._publish_announced()
        return await self._publish_from_table()

    async def _publish_from_table(self) -> int:
        """Publish up to a batch of unpublished rows; they are marked published in the
        background, so the next pass does not wait for this one's mark."""
        # Taken before the read: a row whose mark commits during the read is either still in
        # this set or already marked in what the read sees — never published twice.
        in_flight = {i for published in self._unmarked for i in published}
        if len(in_flight) >= MARK_CHUNK:
            await self._flush_marks()  # marking fell behind: hold the reads, not the memory
            in_flight = set()
        if self._feed is not None:
            self._feed.take()  # committed before the read below, so the read sees them
        self._table_due = False  # cleared before the read: what is announced during it is due
        read = await self._store.query(lambda reader: reader.unpublished_events(self._batch_size, in_flight))
        metrics.RELAY_LAG.set(len(read))
        caught_up = len(read) < self._batch_size
        # Published from announcements and not marked yet: not again.
        rows = [r for r in read if not self._seqs.published(r)] if self._follow_announcements else read
        if rows:
            await self._publish(rows)
            metrics.RELAY_PASSES.labels("table").inc()
            self._seqs.advance(rows)
            self._unmarked.append([r.id for r in rows])
            self._marks_due.set()
        if self._feed is not None and caught_up:
            # Caught up. Rows committed between the take and the read are in both; the next
            # take skips them.
            self._from_table = {r.id for r in read}
            self._following_feed = True
        # Announced rows older than this read are in it (or were published before): from
        # here on, announcements are complete enough to follow, as long as they are heard.
        self._following_announcements = self._follow_announcements and caught_up and self._subscribed
        if not caught_up and len(rows) < len(read):
            await self._flush_marks()  # a full read of rows published from announcements
            return len(read)  # more to read at once
        return len(rows)

    async def _publish_announced(self) -> int:
        """Publish the announced rows that continue their conversations; after a gap, read the
        table (which publishes the gap's rows and the rows after it, in order) and drop the
        rows that were blocked: the read began after they were committed, so it published
        them, or they were out already."""
        rows, self._announced = self._announced, []
        ready, blocked = self._seqs.split(rows)
        if ready:
            try:
                await self._publish(ready)
            except BaseException:
                self._following_announcements = False  # they are unmarked in the table
                raise
            metrics.RELAY_PASSES.labels("announced").inc()
            self._seqs.advance(ready)
            for row in ready:
                _extend_range(self._unmarked_seqs, row.conversation_id, row.seq, row.seq)
            self._marks_due.set()
        if not blocked:
            return len(ready)
        return len(ready) + await self._publish_from_table()

    async def _publish_from_feed(self) -> int:
        assert self._feed is not None
        rows, overflowed = self._feed.take()
        if overflowed:
            log.warning("commit feed overflowed; reading the outbox table")
            self._following_feed = False
            return await self._publish_from_table()
        if self._from_table:
            rows = [r for r in rows if r.id not in self._from_table]
            self._from_table = set()
        for start in range(0, len(rows), self._batch_size):
            chunk = rows[start : start + self._batch_size]
            try:
                await self._publish(chunk)
            except BaseException:
                self._following_feed = False  # these rows and the rest are unmarked in the table
                raise
            self._unmarked.append([r.id for r in chunk])
            self._marks_due.set()
        if rows:
            metrics.RELAY_PASSES.labels("feed").inc()
        return len(rows)

    async def _publish(self, rows: Sequence[OutboxRow | CommittedEvent]) -> None:
        await self._log.publish(
            self._topic,
            [
                OutgoingRecord(
                    key=str(r.conversation_id).encode(),
                    value=r.payload,
                    headers=((REQUEST_ID_HEADER, r.request_id.encode()),) if r.request_id else (),
                )
                for r in rows
            ],
        )
        metrics.RELAYED.inc(len(rows))
        metrics.observe_ages("relay", (r.created_at for r in rows if r.created_at is not None))

    # -- marks, when following the feed ---------------------------------------------------------
    async def _flush_marks(self) -> None:
        """Mark what was published, oldest first, up to ``MARK_CHUNK`` ids per transaction, with
        the seq ranges published from announcements (one transaction for all of it, normally)."""
        async with self._marking:
            while self._unmarked or self._unmarked_seqs:
                ids: list[int] = []
                count = 0
                for published in self._unmarked:
                    if ids and len(ids) + len(published) > MARK_CHUNK:
                        break
                    ids += published
                    count += 1
                ranges, self._unmarked_seqs = self._unmarked_seqs, {}
                try:
                    await self._mark(ids, ranges)
                except BaseException:
                    for conversation_id, (first, last) in ranges.items():
                        _extend_range(self._unmarked_seqs, conversation_id, first, last)
                    raise
                del self._unmarked[:count]

    async def _mark(self, ids: list[int], ranges: Mapping[int, tuple[int, int]]) -> None:
        async def mark(tx: StoreWriter) -> None:
            await tx.mark_published_txn(ids)
            await tx.mark_published_seqs_txn(ranges)

        await self._store.transact(mark)

    async def _check_feed_is_complete(self) -> None:
        """Safety net: an unpublished row at the head of the table on two checks in a row (and
        not waiting for its mark) means the feed missed it; read the table."""
        if not self._following_feed:
            self._stale_suspect = None
            return
        rows = await self._store.query(lambda reader: reader.unpublished_events(1))
        head = rows[0].id if rows else None
        pending = {i for published in self._unmarked for i in published}
        if head is not None and head == self._stale_suspect and head not in pending:
            log.warning("outbox row %s was not announced on the commit feed; reading the table", head)
            self._following_feed = False
            head = None
        self._stale_suspect = head


def _extend_range(ranges: dict[int, tuple[int, int]], conversation_id: int, first: int, last: int) -> None:
    """Widen a conversation's unmarked range: every seq between two this relay published was
    published by it (it publishes each conversation without gaps), so the range stays exact."""
    known = ranges.get(conversation_id)
    ranges[conversation_id] = (first, last) if known is None else (min(known[0], first), max(known[1], last))
