"""Group commit for sends: concurrent sends are written in one store transaction.

Why: a durable commit costs an fsync (SQLite) or a redo-log flush (MySQL); sharing it among
every send that arrived meanwhile multiplies throughput without weakening the promise — each
send is still acknowledged only after the transaction holding it has committed.

Each batch checks its sends (membership, threads, mentions: ``prepare``, a few queries for
the whole batch), takes the seqs of its conversations under the conversation lock, inserts all
messages and all outbox rows, and bumps reply counts, in one transaction. Retries of stored
sends (same ``client_msg_id``) are rare: they are looked up only when the batch's insert hits
the unique key, and the batch is then written again. A send the checks reject fails alone; if
the batch itself fails, its sends are retried one by one so one bad send cannot fail the others.
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
from parley.ports.store import Store, StoreReader, StoreWriter

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
    store's writer, the checks, taking the seqs (on MySQL: waiting for the conversations' row
    locks, which other nodes' batches hold until their commit), building and holding back the
    rows, and the commit with the hand-back. Its last attempt, if it was written twice."""

    started: float = 0.0
    running: float = 0.0
    checked: float = 0.0
    sequenced: float = 0.0
    written: float = 0.0
    committed: float = 0.0

    def phases(self) -> dict[str, float]:
        marks = (self.started, self.running, self.checked, self.sequenced, self.written, self.committed)
        names = ("handoff", "check", "seqs", "rows", "commit")  # between consecutive marks
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
        # Nobody will write what is still queued: its senders get an answer, and retry elsewhere.
        for queue in self._queues:
            while not queue.empty():
                self._fail(queue.get_nowait(), _shutting_down())

    def _queue_of(self, pending: PendingSend) -> asyncio.Queue[PendingSend]:
        return self._queues[writer_of(pending.request.conversation_id, len(self._queues))]

    async def _run(self, queue: asyncio.Queue[PendingSend]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                for pending in batch:  # stopped mid-batch: committed or not, the retry tells
                    self._fail(pending, _shutting_down())
                raise

    async def _write(self, batch: list[PendingSend]) -> None:
        started, timing = time.perf_counter(), BatchTiming()
        try:
            outcomes = await self._write_expecting_no_retries(batch, timing)
        except Exception:
            # Isolate the failing send: retry each alone.
            for pending in batch:
                await self._write_alone(pending)
            return
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
        outcomes = await self._store.transact(
            lambda tx: self._write_batch_txn(tx, batch, timing, look_up_retries)
        )
        timing.committed = time.perf_counter()
        return outcomes

    async def _write_batch_txn(
        self, tx: StoreWriter, batch: list[PendingSend], timing: BatchTiming, look_up_retries: bool
    ) -> list[Outcome | None]:
        timing.running = time.perf_counter()
        prepared = await self._prepare(tx, [p.request for p in batch], look_up_retries)
        timing.checked = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        by_conversation: dict[int, list[Message]] = defaultdict(list)
        position: dict[int, int] = {}  # message id → index in the batch
        claimed: set[tuple[int, str]] = set()
        for i, item in enumerate(prepared):
            if isinstance(item, DomainError):
                outcomes[i] = item
            elif isinstance(item, Duplicate):
                outcomes[i] = (item.message, False)
            elif item.client_msg_id and (item.user_id, item.client_msg_id) in claimed:
                continue  # outcome None: retried after this batch (see _resolve)
            else:
                if item.client_msg_id:
                    claimed.add((item.user_id, item.client_msg_id))
                by_conversation[item.conversation_id].append(item)
                position[item.id] = i

        stored: list[Message] = []
        replies: dict[int, int] = defaultdict(int)
        last_seqs = await tx.bump_seqs_txn({c: len(drafts) for c, drafts in by_conversation.items()})
        timing.sequenced = time.perf_counter()
        for conversation_id, drafts in by_conversation.items():
            last = last_seqs[conversation_id]
            for offset, draft in enumerate(drafts):
                message = draft.model_copy(update={"seq": last - len(drafts) + 1 + offset})
                stored.append(message)
                outcomes[position[message.id]] = (message, True)
                if message.thread_root_id is not None:
                    replies[message.thread_root_id] += 1
        if stored:
            await tx.insert_messages_txn(stored)
            await tx.append_events_txn([_created_event(self._ids, m) for m in stored])
        for root_id, count in replies.items():
            await tx.increment_reply_count_txn(root_id, count)
        timing.written = time.perf_counter()
        return outcomes


def _created_event(ids: IdGenerator, message: Message) -> Event:
    return new_event(
        ids,
        EventType.MESSAGE_CREATED,
        workspace_id=message.workspace_id,
        conversation_id=message.conversation_id,
        seq=message.seq,
        data={"message": message.model_dump(mode="json")},
    )


def _classify_failure() -> BaseException:
    exc = sys.exc_info()[1]
    assert exc is not None
    if isinstance(exc, DomainError):
        return exc
    log.exception("message write failed")
    return Unavailable("the message store is unavailable; the message was not sent", code="store_unavailable")


def _shutting_down() -> Unavailable:
    return Unavailable(
        "the server is shutting down; send again with the same client_msg_id (if this one was "
        "stored, you get it back, not a copy)",
        code="shutting_down",
    )
