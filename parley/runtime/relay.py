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
from datetime import UTC, datetime, timedelta

from parley.ports.eventlog import EventLog, OutgoingRecord
from parley.ports.pubsub import RELAY_WAKEUP_CHANNEL, PubSub
from parley.ports.store import CommitFeed, Lease, OutboxRow, Store
from parley.runtime import metrics
from parley.runtime.background import run_when_due
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
        if feed is not None:
            feed.on_announce(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    def wake_if_active(self) -> bool:
        """Wake this relay if it is the active publisher; False when it is on standby."""
        if self.active:
            self._wake.set()
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
                async for _ in sub.messages():
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay wake-up channel lost; polling only, retrying in 1 s", exc_info=True)
                await asyncio.sleep(1)
            finally:
                await sub.close()

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
        while not self._stopping:
            if loop.time() >= next_check:
                if not await lease.held():
                    log.warning("relay lease lost; standing by")
                    return
                next_check = loop.time() + LEASE_CHECK_INTERVAL
                await self._prune_if_due(loop.time())
                await self._check_feed_is_complete()
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)

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
        """One pass: from the commit feed when following it, else from the outbox table."""
        if self._following_feed:
            return await self._publish_from_feed()
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
        rows = await self._store.query(lambda reader: reader.unpublished_events(self._batch_size, in_flight))
        metrics.RELAY_LAG.set(len(rows))
        if rows:
            await self._publish(rows)
            self._unmarked.append([r.id for r in rows])
            self._marks_due.set()
        if self._feed is not None and len(rows) < self._batch_size:
            # Caught up. Rows committed between the take and the read are in both; the next
            # take skips them.
            self._from_table = {r.id for r in rows}
            self._following_feed = True
        return len(rows)

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
        return len(rows)

    async def _publish(self, rows: list[OutboxRow]) -> None:
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
        """Mark what was published from the feed, oldest first, up to ``MARK_CHUNK`` ids per
        transaction (one transaction for all of it, normally)."""
        async with self._marking:
            while self._unmarked:
                ids: list[int] = []
                count = 0
                for published in self._unmarked:
                    if ids and len(ids) + len(published) > MARK_CHUNK:
                        break
                    ids += published
                    count += 1
                await self._mark(ids)
                del self._unmarked[:count]

    async def _mark(self, ids: list[int]) -> None:
        await self._store.transact(lambda tx: tx.mark_published_txn(ids))

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
