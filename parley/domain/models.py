"""Entities as the domain sees them (and as the API and events show them).

Ids are 63-bit integers inside Parley and decimal strings on the wire, because JavaScript
numbers lose precision above 2**53.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

# Decimal strings become ints by pydantic's own (lax) int parsing, in Rust: a Python validator
# here ran for every id of every model built, a visible share of the send path.
Id = Annotated[
    int,
    Field(ge=0, lt=2**63),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+$", "examples": ["123456789012345678"]}),
]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class ConversationKind(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    DM = "dm"
    GROUP_DM = "group_dm"


class Role(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class User(Model):
    id: Id
    username: str
    display_name: str
    created_at: datetime


class Workspace(Model):
    id: Id
    name: str
    slug: str
    created_by: Id
    created_at: datetime


class WorkspaceMember(Model):
    workspace_id: Id
    user_id: Id
    role: Role
    joined_at: datetime


class Conversation(Model):
    id: Id
    workspace_id: Id
    kind: ConversationKind
    name: str | None
    topic: str = ""
    created_by: Id
    created_at: datetime
    last_seq: int = Field(description="seq of the newest event in this conversation")


class Reaction(Model):
    emoji: str
    user_ids: list[Id]
    count: int


class Message(Model):
    id: Id
    conversation_id: Id
    workspace_id: Id
    seq: int = Field(description="position of this message's creation in the conversation's event stream")
    user_id: Id
    text: str
    client_msg_id: str | None = None
    thread_root_id: Id | None = None
    reply_count: int = 0
    mentions: list[Id] = Field(default_factory=list)
    mentions_channel: bool = False
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False
    reactions: list[Reaction] = Field(default_factory=list)


class ReadMarker(Model):
    conversation_id: Id
    user_id: Id
    last_read_seq: int
