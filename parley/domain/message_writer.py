"""Group commit for sends: concurrent sends are written in one store transaction.

Why: a durable commit costs an fsync (SQLite) or a redo-log flush (MySQL); sharing it among
every send that arrived meanwhile multiplies throughput without weakening the promise — each
send is still acknowledged only after the transaction holding it has committed.

Each batch takes the seqs of its conversations under the conversation lock, inserts all
messages and all outbox rows, and bumps reply counts, in one transaction. If the batch fails
(say, a concurrent retry of the same ``client_msg_id``), its sends are retried one by one so
one bad send cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from parley.domain.actions._events import new_event
from parley.domain.errors import DomainError, Unavailable
from parley.domain.events import Event, EventType
from parley.domain.models import Message
from parley.ids import IdGenerator
from parley.ports.store import Store, StoreWriter

log = logging.getLogger(__name__)
MAX_BATCH = 256


@dataclass
class PendingSend:
    message: Message  # seq is assigned by the writer
    future: asyncio.Future[tuple[Message, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MessageWriter:
    def __init__(
        self, store: Store, ids: IdGenerator, *, on_commit: Callable[[], None], concurrency: int = 1
    ) -> None:
        self._store = store
        self._ids = ids
        self._on_commit = on_commit
        self._queue: asyncio.Queue[PendingSend] = asyncio.Queue()
        self._concurrency = concurrency
        self._workers: list[asyncio.Task[None]] = []

    def _ensure_started(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._run(), name="message-writer") for _ in range(self._concurrency)
            ]

    async def submit(self, message: Message) -> tuple[Message, bool]:
        """Store ``message``; returns (stored message, created). ``created`` is False when the
        same (user, client_msg_id) was stored before: the original is returned."""
        self._ensure_started()
        pending = PendingSend(message)
        await self._queue.put(pending)
        return await pending.future

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._write_batch(batch)
            except Exception:
                if len(batch) == 1:
                    self._fail(batch[0], *_classify_failure())
                    continue
                # Isolate the failing send: retry each alone.
                for pending in batch:
                    try:
                        self._resolve([pending], await self._write_batch([pending]))
                    except Exception:
                        self._fail(pending, *_classify_failure())
                continue
            self._resolve(batch, results)

    def _resolve(self, batch: list[PendingSend], results: list[tuple[Message, bool]]) -> None:
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
        self._on_commit()

    def _fail(self, pending: PendingSend, exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)

    async def _write_batch(self, batch: list[PendingSend]) -> list[tuple[Message, bool]]:
        async with self._store.write() as tx:
            return await self._write_batch_txn(tx, batch)

    async def _write_batch_txn(self, tx: StoreWriter, batch: list[PendingSend]) -> list[tuple[Message, bool]]:
        results: list[tuple[Message, bool] | None] = [None] * len(batch)
        by_conversation: dict[int, list[int]] = defaultdict(list)
        seen_client_ids: dict[tuple[int, str], int] = {}
        for i, pending in enumerate(batch):
            m = pending.message
            if m.client_msg_id:
                key = (m.user_id, m.client_msg_id)
                if key in seen_client_ids:
                    continue  # same retry twice in one batch: resolved from the first below
                existing = await tx.find_by_client_msg_id(m.user_id, m.client_msg_id)
                if existing is not None:
                    results[i] = (existing, False)
                    continue
                seen_client_ids[key] = i
            by_conversation[m.conversation_id].append(i)

        stored: list[Message] = []
        events: list[Event] = []
        replies: dict[int, int] = defaultdict(int)
        for conversation_id, indexes in by_conversation.items():
            last = await tx.bump_seq_txn(conversation_id, len(indexes))
            for offset, i in enumerate(indexes):
                seq = last - len(indexes) + 1 + offset
                message = batch[i].message.model_copy(update={"seq": seq})
                stored.append(message)
                results[i] = (message, True)
                events.append(_created_event(self._ids, message))
                if message.thread_root_id is not None:
                    replies[message.thread_root_id] += 1
        if stored:
            await tx.insert_messages_txn(stored)
            await tx.append_events_txn(events)
        for root_id, count in replies.items():
            await tx.increment_reply_count_txn(root_id, count)
        for i, pending in enumerate(batch):
            if results[i] is None and pending.message.client_msg_id:
                first = seen_client_ids[(pending.message.user_id, pending.message.client_msg_id)]
                first_result = results[first]
                assert first_result is not None
                results[i] = (first_result[0], False)
        return [r for r in results if r is not None]


def _created_event(ids: IdGenerator, message: Message) -> Event:
    return new_event(
        ids,
        EventType.MESSAGE_CREATED,
        workspace_id=message.workspace_id,
        conversation_id=message.conversation_id,
        seq=message.seq,
        data={"message": message.model_dump(mode="json")},
    )


def _classify_failure() -> tuple[BaseException]:
    exc = sys.exc_info()[1]
    assert exc is not None
    if isinstance(exc, DomainError):
        return (exc,)
    log.exception("message write failed")
    return (
        Unavailable("the message store is unavailable; the message was not sent", code="store_unavailable"),
    )
