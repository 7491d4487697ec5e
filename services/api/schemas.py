"""Request and response bodies of the REST API (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from parley.domain.actions.conversations import ConversationView
from parley.domain.models import Conversation, Id, Message, Role, User, Workspace


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(Body):
    username: str = Field(min_length=2, max_length=32, examples=["alice"])
    password: str = Field(min_length=8, max_length=256)
    display_name: str | None = Field(default=None, max_length=128)


class LogIn(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenPublic(BaseModel):
    token: str
    token_type: str = "bearer"
    user: User


class WorkspaceCreate(Body):
    name: str = Field(min_length=1, max_length=128)
    slug: str | None = Field(default=None, max_length=63)


class InvitePublic(BaseModel):
    code: str
    workspace_id: Id
    expires_at: datetime


class InviteAccept(Body):
    code: str = Field(min_length=1, max_length=64)


class MemberAdd(Body):
    username: str = Field(min_length=1, max_length=64)


class WorkspaceMemberPublic(BaseModel):
    user: User
    role: Role
    joined_at: datetime


class ChannelCreate(Body):
    name: str = Field(min_length=1, max_length=81)
    private: bool = False
    topic: str = Field(default="", max_length=250)


class DmOpen(Body):
    user_ids: list[Id] = Field(min_length=1, max_length=8)


class ConversationPublic(BaseModel):
    conversation: Conversation
    is_member: bool
    last_read_seq: int
    unread_count: int
    member_ids: list[Id] | None = Field(default=None, description="for DMs and group DMs only")

    @classmethod
    def of(cls, view: ConversationView) -> ConversationPublic:
        return cls(
            conversation=view.conversation,
            is_member=view.is_member,
            last_read_seq=view.last_read_seq,
            unread_count=view.unread_count,
            member_ids=view.member_ids,
        )


class ConversationMemberAdd(Body):
    user_id: Id


class MessageCreate(Body):
    text: str = Field(description="1 to PARLEY_MAX_MESSAGE_CHARS characters")
    client_msg_id: str | None = Field(default=None, max_length=64)
    thread_root_id: Id | None = None


class MessageEdit(Body):
    text: str


class HistoryPublic(BaseModel):
    messages: list[Message]
    has_more: bool


class ThreadPublic(BaseModel):
    root: Message
    replies: list[Message]
    has_more: bool


class ReactionCreate(Body):
    emoji: str = Field(min_length=1, max_length=66)


class ReadMarkerSet(Body):
    seq: int = Field(ge=0)


class SearchMatchPublic(BaseModel):
    message: Message
    highlight: str = Field(description="HTML-escaped text with <mark> around matches")


class SearchPublic(BaseModel):
    total: int
    matches: list[SearchMatchPublic]
    limit: int
    offset: int


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable (e.g. channel_not_found, rate_limited)")
    message: str
    details: list[dict[str, object]] | None = Field(default=None, description="schema violations (422)")
    retry_after: float | None = Field(default=None, description="seconds (429; also in Retry-After)")


class ErrorPublic(BaseModel):
    """Every error answer of the API (docs/protocol.md)."""

    error: ErrorDetail


_ERROR_MEANINGS = {
    400: "the body could not be parsed",
    401: "missing, invalid, expired or revoked token; wrong username or password",
    403: "not allowed (e.g. not a member of the channel, not the author)",
    404: "does not exist, or not visible to the caller (private conversations, other workspaces)",
    409: "conflicts with existing state (e.g. username or slug taken)",
    422: "input does not match the schema or the domain's rules",
    429: "rate limited; retry after the Retry-After header's seconds",
    503: "an engine behind the API is unavailable; nothing was written",
}
# Declared on every route so clients (and the schema tests) know every answer they can get.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorPublic, "description": meaning} for status, meaning in _ERROR_MEANINGS.items()
}


__all__ = ["User", "Workspace"]
