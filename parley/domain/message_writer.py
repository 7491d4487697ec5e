"""Group commit for sends: concurrent sends are written in one store transaction.

Why: a durable commit costs an fsync (SQLite) or a redo-log flush (MySQL); sharing it among
every send that arrived meanwhile multiplies throughput without weakening the promise — each
send is still acknowledged only after the transaction holding it has committed.

Each batch checks its sends (membership, threads, mentions: ``prepare``, a few queries for
the whole batch), then has the store number its new messages under the conversations' locks and
insert them with their outbox rows (``insert_new_messages_txn``), and bumps reply counts, in one
transaction; the seqs are read after the commit (on MySQL they are taken in the commit's packet).
Retries of stored sends (same ``client_msg_id``) are rare: they are looked up only when the
batch's insert hits the unique key, and the batch is then written again. A send the checks
reject fails alone; if the batch itself fails, its sends are retried one by one so one bad send
cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from parley.domain.actions._events import new_event
from parley.domain.errors import Conflict, DomainError, Unavailable
from parley.domain.events import Event, EventType
from parley.domain.models import Message
from parley.ids import IdGenerator
from parley.ports.store import NewSeqs, Store, StoreReader, StoreWriter

log = logging.getLogger(__name__)
MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A send as the client asked for it; checked and completed in the write batch."""

    message_id: int
    user_id: int
    conversation_id: int
    text: str
    client_msg_id: str | None
    thread_root_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The stored original of a retried ``client_msg_id``."""

    message: Message


PreparedSend = Message | Duplicate | DomainError
# Checks a batch's requests inside its transaction (``messages.prepare_sends``): the writer
# owns batching and ordering, the send action owns what a valid send is. The flag: look for
# stored originals of the requests' client_msg_ids first.
PrepareSends = Callable[[StoreReader, Sequence[SendRequest], bool], Awaitable[list[PreparedSend]]]
Outcome = tuple[Message, bool] | DomainError


def writer_of(conversation_id: int, writers: int) -> int:
    """The writer (0 ≤ n < ``writers``) that owns a conversation's sends.

    Not ``id % writers``: a Snowflake id's low bits are its millisecond's sequence, 0 for almost
    every id made one at a time, so every conversation landed on writer 0. Fibonacci hashing
    takes the high bits of the id times 2^64/φ, which every bit of the id moves."""
    mixed = (conversation_id * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return (mixed >> 32) * writers >> 32


@dataclass(slots=True)
class BatchTiming:
    """Where a batch's time went (``time.perf_counter()`` marks, seconds): the hand-off to the
    store's writer, the checks, the rows (numbering and inserting the new messages, their events
    and reply counts; on MySQL only building the statements, held back for the commit's packet),
    and the commit with the hand-back (on MySQL also taking the seqs, waiting for the
    conversations' row locks, which other nodes' batches hold for their own packet, and writing
    the rows). Its last attempt, if it was written twice."""

    started: float = 0.0
    running: float = 0.0
    checked: float = 0.0
    written: float = 0.0
    committed: float = 0.0

    def phases(self) -> dict[str, float]:
        marks = (self.started, self.running, self.checked, self.written, self.committed)
        names = ("handoff", "check", "rows", "commit")  # between consecutive marks
        spans = zip(names, marks, marks[1:], strict=False)
        return {name: max(0.0, end - start) for name, start, end in spans}


BatchCommitted = Callable[[int, float, BatchTiming], None]


@dataclass
class PendingSend:
    request: SendRequest
    future: asyncio.Future[tuple[Message, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MessageWriter:
    def __init__(
        self,
        store: Store,
        ids: IdGenerator,
        *,
        prepare: PrepareSends,
        on_commit: BatchCommitted,
        concurrency: int = 1,
    ) -> None:
        self._store = store
        self._ids = ids
        self._prepare = prepare
        self._on_commit = on_commit
        # One queue per writer, a conversation always on the same one: concurrent batches of
        # one process never wait on each other's conversation locks (MySQL), and each
        # conversation's sends keep their arrival order into the store.
        self._queues: list[asyncio.Queue[PendingSend]] = [asyncio.Queue() for _ in range(concurrency)]
        self._workers: list[asyncio.Task[None]] = []

    def _ensure_started(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._run(queue), name="message-writer") for queue in self._queues
            ]

    async def submit(self, request: SendRequest) -> tuple[Message, bool]:
        """Store the send; returns (stored message, created). ``created`` is False when the
        same (user, client_msg_id) was stored before: the original is returned."""
        self._ensure_started()
        pending = PendingSend(request)
        await self._queue_of(pending).put(pending)
        return await pending.future

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def _queue_of(self, pending: PendingSend) -> asyncio.Queue[PendingSend]:
        return self._queues[writer_of(pending.request.conversation_id, len(self._queues))]

    async def _run(self, queue: asyncio.Queue[PendingSend]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            started, timing = time.perf_counter(), BatchTiming()
            try:
                outcomes = await self._write_expecting_no_retries(batch, timing)
            except Exception:
                # Isolate the failing send: retry each alone.
                for pending in batch:
                    await self._write_alone(pending)
                continue
            self._resolve(batch, outcomes)
            self._on_commit(len(batch), time.perf_counter() - started, timing)

    async def _write_expecting_no_retries(
        self, batch: list[PendingSend], timing: BatchTiming
    ) -> list[Outcome | None]:
        """Write the batch without looking for stored originals of its client_msg_ids first: a
        client's retry of a stored send is rare, and a query per batch is a round trip under
        the conversations' locks' queue. A retry in the batch makes its INSERT hit the (user,
        client_msg_id) unique key, the transaction rolls back whole, and the batch is written
        again with the look-up, which answers the retry with its original."""
        try:
            return await self._write_batch(batch, timing, look_up_retries=False)
        except Conflict as exc:
            if exc.code != "duplicate":
                raise
        return await self._write_batch(batch, timing, look_up_retries=True)

    async def _write_alone(self, pending: PendingSend) -> None:
        """One send in its own batch. On MySQL several writers run at once: when another one
        commits the same (user, client_msg_id) first, the insert fails; the transaction that
        won has committed by then, so the next attempt's checks find it and answer as for any
        retry. A few attempts, since each one has lost to a different concurrent copy."""
        for attempt in range(1, 4):
            started, timing = time.perf_counter(), BatchTiming()
            try:
                self._resolve([pending], await self._write_batch([pending], timing, look_up_retries=True))
                self._on_commit(1, time.perf_counter() - started, timing)
                return
            except Exception:
                failure = _classify_failure()
                lost_a_race = isinstance(failure, Conflict) and failure.code == "duplicate"
                if not lost_a_race or attempt == 3:
                    self._fail(pending, failure)
                    return

    def _resolve(self, batch: list[PendingSend], outcomes: list[Outcome | None]) -> None:
        for pending, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                # The same retry twice in one batch: the second waits for the first's commit,
                # then gets the original back (or the conflict) from the next batch's checks.
                self._queue_of(pending).put_nowait(pending)
            elif isinstance(outcome, DomainError):
                self._fail(pending, outcome)
            elif not pending.future.done():
                pending.future.set_result(outcome)

    def _fail(self, pending: PendingSend, exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)

    async def _write_batch(
        self, batch: list[PendingSend], timing: BatchTiming, *, look_up_retries: bool
    ) -> list[Outcome | None]:
        # transact(): the batch awaits only its writer, so the embedded store can run all of
        # it on its database thread in one hand-off (see the store port).
        timing.started = time.perf_counter()
        written = await self._store.transact(
            lambda tx: self._write_batch_txn(tx, batch, timing, look_up_retries)
        )
        timing.committed = time.perf_counter()
        # The seqs are read only now: a store may take them in the commit's own round trip.
        outcomes = written.outcomes
        for message in written.seqs.number(written.drafts):
            outcomes[written.position[message.id]] = (message, True)
        return outcomes

    async def _write_batch_txn(
        self, tx: StoreWriter, batch: list[PendingSend], timing: BatchTiming, look_up_retries: bool
    ) -> _WrittenBatch:
        timing.running = time.perf_counter()
        prepared = await self._prepare(tx, [p.request for p in batch], look_up_retries)
        timing.checked = time.perf_counter()
        written = _WrittenBatch([None] * len(batch))
        claimed: set[tuple[int, str]] = set()
        replies: dict[int, int] = defaultdict(int)
        for i, item in enumerate(prepared):
            if isinstance(item, DomainError):
                written.outcomes[i] = item
            elif isinstance(item, Duplicate):
                written.outcomes[i] = (item.message, False)
            elif item.client_msg_id and (item.user_id, item.client_msg_id) in claimed:
                continue  # outcome None: retried after this batch (see _resolve)
            else:
                if item.client_msg_id:
                    claimed.add((item.user_id, item.client_msg_id))
                written.drafts[item.conversation_id].append(item)
                written.position[item.id] = i
                if item.thread_root_id is not None:
                    replies[item.thread_root_id] += 1
        if written.drafts:
            written.seqs = await tx.insert_new_messages_txn(written.drafts, self._created_event)
        for root_id, count in replies.items():
            await tx.increment_reply_count_txn(root_id, count)
        timing.written = time.perf_counter()
        return written

    def _created_event(self, message: Message) -> Event:
        return new_event(
            self._ids,
            EventType.MESSAGE_CREATED,
            workspace_id=message.workspace_id,
            conversation_id=message.conversation_id,
            seq=message.seq,
            data={"message": message.model_dump(mode="json")},
        )


@dataclass(slots=True)
class _WrittenBatch:
    """A batch's transaction, as the writer finishes it after the commit: each send's outcome,
    the new messages by conversation (seq not set yet) with their places in the batch, and the
    seqs the store gave them."""

    outcomes: list[Outcome | None]
    drafts: dict[int, list[Message]] = field(default_factory=lambda: defaultdict(list))
    position: dict[int, int] = field(default_factory=dict)  # message id → index in the batch
    seqs: NewSeqs = field(default_factory=NewSeqs)


def _classify_failure() -> BaseException:
    exc = sys.exc_info()[1]
    assert exc is not None
    if isinstance(exc, DomainError):
        return exc
    log.exception("message write failed")
    return Unavailable("the message store is unavailable; the message was not sent", code="store_unavailable")
