"""Events for tests that drive the log and its consumers directly."""

from __future__ import annotations

from datetime import UTC, datetime

from parley.domain.events import Event, EventType


def created_event(seq: int, text: str, *, conversation_id: int = 1) -> Event:
    """A ``message.created`` event at ``seq`` carrying only the message's text."""
    return Event(
        type=EventType.MESSAGE_CREATED,
        event_id=seq,
        workspace_id=1,
        conversation_id=conversation_id,
        seq=seq,
        ts=datetime.now(UTC),
        data={"message": {"text": text}},
    )
