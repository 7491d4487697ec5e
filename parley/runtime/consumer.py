"""The consumer loop every Kafka consumer service runs (fanout, indexer, cache).

Order of work per batch: poll → decode → ``handle_batch`` → commit. Offsets are committed only
after the handler returned, so a crash replays the batch (at-least-once) and handlers must be
idempotent. The commit goes in the background (``OffsetCommits``), a few a second: the next poll
does not wait for the group coordinator's round trip, and the broker gets a few commits a second
per group instead of one per batch; a crash replays at most the last ``commit_interval`` of
records, which the handlers already take (as they take a replayed batch).

A consumer that can wait (``linger`` > 0: the indexer, whose engine makes a write searchable
only at its next refresh anyway) gets batches gathered for up to ``linger`` after their first
record: a few large writes and commits instead of one per relay pass, which on a shared box is
CPU taken from the path users wait on. The fanout's linger is 0: every millisecond is a user's.

Two kinds of failure, told apart by asking the consumer whether its engine answers
(``check_engine``): while the engine is down, the batch waits and is retried, uncommitted, for
as long as it takes (an outage must not dead-letter good events); when the engine is fine, the
event itself is the problem: it is retried alone a few times, then sent to the dead-letter topic
with the reason, so one poison event cannot stall its partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from parley.domain.events import Event
from parley.ports.eventlog import EventLog, LogConsumer, OutgoingRecord, Record
from parley.runtime import metrics
from parley.runtime.background import run_when_due
from parley.tracing import REQUEST_ID_HEADER, request_id_var

log = logging.getLogger(__name__)


class EventConsumer(Protocol):
    group: str
    linger: float  # seconds a batch may wait after its first record for more (see above)

    async def handle_batch(self, events: Sequence[Event]) -> None: ...

    async def check_engine(self) -> None:
        """Raise if the engine this consumer writes to cannot be reached."""
        ...


# Seconds between two offset commits of a group (Kafka's Java consumer auto-commits every 5 s).
COMMIT_INTERVAL = 0.25


class OffsetCommits:
    """The offsets of handled records, committed in the background: at most one commit in
    flight, the next one ``interval`` after it, covering everything handled meanwhile."""

    def __init__(self, consumer: LogConsumer, group: str, interval: float) -> None:
        self._consumer = consumer
        self._latest: dict[tuple[str, int], Record] = {}  # per partition, the last handled
        self._due = asyncio.Event()
        work = run_when_due(self._due, self._commit, interval=interval, what=f"{group}: offset commit")
        self._task = asyncio.create_task(work, name=f"commits:{group}")

    def handled(self, records: Sequence[Record]) -> None:
        for record in records:
            key = (record.topic, record.partition)
            last = self._latest.get(key)
            if last is None or record.offset > last.offset:
                self._latest[key] = record
        if records:
            self._due.set()

    async def close(self) -> None:
        """Stop, then commit what is left (``stop()``'s promise: the batch in hand is committed)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._commit()

    async def _commit(self) -> None:
        if not self._latest:
            return
        taken, self._latest = self._latest, {}
        try:
            await self._consumer.commit(list(taken.values()))
        except BaseException:
            # Not committed: merged back under anything handled since (never behind it).
            for key, record in taken.items():
                if key not in self._latest:
                    self._latest[key] = record
            raise


class ConsumerRunner:
    def __init__(
        self,
        log_: EventLog,
        consumer: EventConsumer,
        *,
        topic: str,
        dead_letter_topic: str,
        max_records: int = 500,
        attempts: int = 3,
        group_prefix: str = "",
        commit_interval: float = COMMIT_INTERVAL,
    ) -> None:
        self._log = log_
        self._handler = consumer
        self._topic = topic
        self._dlq = dead_letter_topic
        self._max_records = max_records
        self._attempts = attempts
        self._commit_interval = commit_interval
        self._group_id = group_prefix + consumer.group
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._consumer: LogConsumer | None = None

    @property
    def group(self) -> str:
        """The consumer's group, without the deployment's prefix (``fanout``, ``indexer``…)."""
        return self._handler.group

    def assigned(self) -> bool:
        """True once this member owns partitions (tests and readiness wait for it)."""
        return self._consumer is not None and bool(self._consumer.assignment())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self._handler.group}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, then stop."""
        self._stopping.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s failed; restarting in 1 s", self._handler.group)
                await asyncio.sleep(1)

    async def _consume(self) -> None:
        # The log may hold a fetch half the linger: the gathering below waits for the rest.
        consumer = self._log.consumer(self._topic, self._group_id, fetch_wait=self._handler.linger / 2)
        await consumer.start()
        self._consumer = consumer
        commits = OffsetCommits(consumer, self._handler.group, self._commit_interval)
        try:
            while not self._stopping.is_set():
                records = await consumer.poll(self._max_records, timeout=0.5)
                if not records:
                    continue
                if self._handler.linger > 0:
                    records += await self._gather(consumer, self._max_records - len(records))
                await self._process(records)
                commits.handled(records)
                metrics.CONSUMED.labels(self._handler.group).inc(len(records))
        finally:
            self._consumer = None
            try:
                await commits.close()
            finally:
                await consumer.close()

    async def _gather(self, consumer: LogConsumer, room: int) -> list[Record]:
        """More records for the batch in hand, until it is full or its linger has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handler.linger
        more: list[Record] = []
        while len(more) < room and not self._stopping.is_set():
            left = deadline - loop.time()
            if left <= 0:
                break
            more += await consumer.poll(room - len(more), timeout=left)
        return more

    async def _process(self, records: Sequence[Record]) -> None:
        decoded, bad = _decode(records)
        for record, reason in bad:
            await self._dead_letter(record, reason)
        events = [event for _, event in decoded]
        group = self._handler.group
        delay = 0.2
        while True:
            try:
                await self._handler.handle_batch(events)
                metrics.observe_ages(group, (event.ts for event in events))
                break
            except Exception as exc:
                if await self._engine_ok():
                    log.exception("batch of %d failed in %s; retrying one by one", len(events), group)
                    for record, event in decoded:
                        await self._process_one(record, event)
                    return
                log.warning("%s: engine unavailable (%s); retrying in %.1f s", group, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if log.isEnabledFor(logging.DEBUG):
            for record, event in decoded:
                _log_handled(self._handler.group, record, event)

    async def _engine_ok(self) -> bool:
        try:
            await asyncio.wait_for(self._handler.check_engine(), timeout=2)
            return True
        except Exception:
            return False

    async def _process_one(self, record: Record, event: Event) -> None:
        attempt = 0
        while True:
            try:
                await self._handler.handle_batch([event])
                return
            except Exception as exc:
                if not await self._engine_ok():
                    await asyncio.sleep(1.0)  # an outage began meanwhile: wait, don't count it
                    continue
                attempt += 1
                if attempt >= self._attempts:
                    await self._dead_letter(record, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(0.1 * 2**attempt)

    async def _dead_letter(self, record: Record, reason: str) -> None:
        log.error("dead-lettering %s/%d@%d: %s", record.topic, record.partition, record.offset, reason)
        metrics.DEAD_LETTERED.labels(self._handler.group).inc()
        headers = (
            *record.headers,
            ("parley-dlq-reason", reason.encode()[:1000]),
            ("parley-dlq-group", self._handler.group.encode()),
            ("parley-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        )
        await self._log.publish(self._dlq, [OutgoingRecord(record.key, record.value, headers)])


def _decode(records: Sequence[Record]) -> tuple[list[tuple[Record, Event]], list[tuple[Record, str]]]:
    decoded: list[tuple[Record, Event]] = []
    bad: list[tuple[Record, str]] = []
    for record in records:
        try:
            decoded.append((record, Event.from_bytes(record.value)))
        except ValueError as exc:
            bad.append((record, f"undecodable event: {exc}"[:500]))
    return decoded, bad


def _log_handled(group: str, record: Record, event: Event) -> None:
    """One line per event, under the request id that produced it (end-to-end tracing)."""
    rid = next((v.decode() for k, v in record.headers if k == REQUEST_ID_HEADER), None)
    token = request_id_var.set(rid)
    try:
        log.debug("%s handled %s seq=%s conversation=%s", group, event.type, event.seq, event.conversation_id)
    finally:
        request_id_var.reset(token)
