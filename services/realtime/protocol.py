"""Client → server WebSocket frames (JSON text). See docs/protocol.md for every frame."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from parley.domain.models import Id


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(max_length=64)] | int | None = Field(
        default=None, description="echoed in the ack/error for this frame"
    )


class AuthFrame(Frame):
    type: Literal["auth"]
    token: str = Field(max_length=4096)
    cursors: dict[str, int] | None = Field(
        default=None,
        max_length=10_000,
        description="conversation id → last seq seen: resume from there with no race against live events",
    )


class SendFrame(Frame):
    type: Literal["send"]
    conversation_id: Id
    text: str
    client_msg_id: str | None = Field(default=None, max_length=64)
    thread_root_id: Id | None = None


class TypingFrame(Frame):
    type: Literal["typing"]
    conversation_id: Id
    thread_root_id: Id | None = None


class MarkReadFrame(Frame):
    type: Literal["mark_read"]
    conversation_id: Id
    seq: int = Field(ge=0)


class ResumeFrame(Frame):
    type: Literal["resume"]
    cursors: dict[str, int] = Field(max_length=10_000, description="conversation id → last seq seen")


class PresenceFrame(Frame):
    type: Literal["presence"]
    status: Literal["online", "away"]


class PingFrame(Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    AuthFrame | SendFrame | TypingFrame | MarkReadFrame | ResumeFrame | PresenceFrame | PingFrame,
    Field(discriminator="type"),
]
client_frame = TypeAdapter(ClientFrame)
KNOWN_TYPES = frozenset({"auth", "send", "typing", "mark_read", "resume", "presence", "ping"})
