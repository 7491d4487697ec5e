"""Small permission-checked reads for API clients that address things their own way: a
message by its position in a conversation, a conversation by id without the unread
bookkeeping of ``get_conversation``, workspace members by id, a user by name (operators)."""

from __future__ import annotations

from collections.abc import Iterable

from parley.domain.deps import Deps
from parley.domain.errors import NotFound
from parley.domain.models import Conversation, Message, User
from parley.domain.permissions import readable_conversation, require_workspace_member, visible_conversation


async def message_at(deps: Deps, actor: User, conversation_id: int, seq: int) -> Message:
    """The message created at ``seq`` in a conversation the actor is a member of (deleted ones
    included: callers decide how to show them)."""
    async with deps.store.read() as reader:
        await readable_conversation(reader, conversation_id, actor.id)
        message = await reader.get_message_by_seq(conversation_id, seq) if seq > 0 else None
    if message is None:
        raise NotFound("message not found", code="message_not_found")
    return message


async def conversation_for(deps: Deps, actor: User, conversation_id: int) -> Conversation:
    """A conversation the actor may know exists (member, or a public channel of their workspace)."""
    async with deps.store.read() as reader:
        return await visible_conversation(reader, conversation_id, actor.id)


async def members_by_id(
    deps: Deps, actor: User, workspace_id: int, user_ids: Iterable[int]
) -> dict[int, User]:
    """Those of ``user_ids`` who are members of the actor's workspace (others are left out)."""
    wanted = sorted(set(user_ids))
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        members = [u for u in wanted if await reader.get_workspace_member(workspace_id, u) is not None]
        return {u.id: u for u in await reader.get_users(members)}


async def user_by_username(deps: Deps, username: str) -> User:
    """For operator commands, which name users by username."""
    async with deps.store.read() as reader:
        found = await reader.get_users_by_username([username.strip().lower()])
    if not found:
        raise NotFound("user not found", code="user_not_found")
    return found[0]
