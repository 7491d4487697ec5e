"""Conversation events: what flows from the outbox through the event log to consumers and
clients. Every persisted event has a per-conversation ``seq`` (gap-free, strictly increasing,
assigned in the transaction that made the change); ephemeral events (typing, presence) have none.

The envelope is serialized once, when the action writes the outbox row, and those exact bytes
travel through the log, pub/sub and out of the WebSocket: every hop sees the same payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from parley.domain.models import Id


class EventType(StrEnum):
    CONVERSATION_CREATED = "conversation.created"
    MESSAGE_CREATED = "message.created"
    MESSAGE_EDITED = "message.edited"
    MESSAGE_DELETED = "message.deleted"
    REACTION_ADDED = "reaction.added"
    REACTION_REMOVED = "reaction.removed"
    MEMBER_JOINED = "member.joined"
    MEMBER_LEFT = "member.left"
    # Ephemeral: never stored, never replayed.
    TYPING = "typing"
    PRESENCE = "presence"
    READ_MARKER = "read_marker.updated"  # to the reader's own other sockets


EPHEMERAL_TYPES = frozenset({EventType.TYPING, EventType.PRESENCE, EventType.READ_MARKER})
PERSISTED_TYPES = frozenset(t for t in EventType if t not in EPHEMERAL_TYPES)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: EventType
    event_id: Id
    workspace_id: Id
    conversation_id: Id | None = None
    seq: int | None = None
    ts: datetime
    data: dict[str, Any]
    # The envelope's bytes, kept from the first serialization or from decoding, so every hop
    # forwards the exact bytes it received and none serializes the same event again.
    _raw: bytes | None = PrivateAttr(default=None)

    def to_bytes(self) -> bytes:
        if self._raw is None:
            self._raw = self.__pydantic_serializer__.to_json(self)
        return self._raw

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Event:
        copy = super().model_copy(update=update, deep=deep)
        copy._raw = None  # a changed copy is serialized anew
        return copy

    @classmethod
    def from_bytes(cls, raw: bytes) -> Event:
        """Decode an envelope. Several consumer groups of one process read the same records
        (the embedded log hands each the same bytes object): each distinct envelope is decoded
        once and the (frozen) event shared; consumers read events, never change them."""
        return _decode_event(raw)


# Small: the groups read within milliseconds of each other, and every cached event outlives the
# young generations, so a big cache fed the full (whole-heap) collections: 4,096 made them 37 ms.
@lru_cache(maxsize=512)
def _decode_event(raw: bytes) -> Event:
    event = Event.model_validate_json(raw)
    event._raw = raw
    return event


# Payload shapes, checked in tests (tests/domain/test_event_schemas.py) so producers and
# consumers cannot drift apart.
class MessagePayload(BaseModel):
    message: dict[str, Any]


class ReactionPayload(BaseModel):
    message_id: Id
    user_id: Id
    emoji: str


class MemberPayload(BaseModel):
    user_id: Id
    conversation: dict[str, Any]


class ConversationCreatedPayload(BaseModel):
    conversation: dict[str, Any]
    member_ids: list[Id]


class TypingPayload(BaseModel):
    user_id: Id
    thread_root_id: Id | None = None


class PresencePayload(BaseModel):
    user_id: Id
    status: str


class ReadMarkerPayload(BaseModel):
    user_id: Id
    last_read_seq: int


PAYLOAD_SCHEMAS: dict[EventType, type[BaseModel]] = {
    EventType.CONVERSATION_CREATED: ConversationCreatedPayload,
    EventType.MESSAGE_CREATED: MessagePayload,
    EventType.MESSAGE_EDITED: MessagePayload,
    EventType.MESSAGE_DELETED: MessagePayload,
    EventType.REACTION_ADDED: ReactionPayload,
    EventType.REACTION_REMOVED: ReactionPayload,
    EventType.MEMBER_JOINED: MemberPayload,
    EventType.MEMBER_LEFT: MemberPayload,
    EventType.TYPING: TypingPayload,
    EventType.PRESENCE: PresencePayload,
    EventType.READ_MARKER: ReadMarkerPayload,
}
