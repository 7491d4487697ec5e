"""Building persisted events inside an action's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from parley.domain.events import Event, EventType
from parley.ids import IdGenerator

if TYPE_CHECKING:  # deps imports the message writer, which builds events
    from parley.domain.deps import Deps
from parley.ports.store import StoreWriter


def new_event(
    ids: IdGenerator,
    type_: EventType,
    *,
    workspace_id: int,
    conversation_id: int,
    seq: int,
    data: dict[str, Any],
) -> Event:
    return Event(
        type=type_,
        event_id=ids.next_id(),
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        seq=seq,
        ts=datetime.now(UTC),
        data=data,
    )


async def append_event_txn(
    deps: Deps,
    tx: StoreWriter,
    type_: EventType,
    *,
    workspace_id: int,
    conversation_id: int,
    data: dict[str, Any],
    seq: int | None = None,
) -> Event:
    """Take the conversation's next seq (locking it until commit), unless the transaction took
    it already (``seq``), and write the outbox row."""
    if seq is None:
        seq = await tx.bump_seq_txn(conversation_id)
    event = new_event(
        deps.ids, type_, workspace_id=workspace_id, conversation_id=conversation_id, seq=seq, data=data
    )
    await tx.append_events_txn([event])
    return event
