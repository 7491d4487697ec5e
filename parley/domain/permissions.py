"""Who may see and do what. Every action and every read goes through these checks, so REST,
WebSocket, search and resume cannot disagree.

Rules: workspace content is visible to workspace members only; a conversation's messages,
events and search hits only to its members; public channels are visible (listed, joinable) to
every workspace member; private conversations do not exist for non-members (404, not 403).
"""

from __future__ import annotations

from collections.abc import Collection

from parley.domain.errors import DomainError, Forbidden, NotFound
from parley.domain.models import Conversation, ConversationKind, Workspace, WorkspaceMember
from parley.ports.store import StoreReader


async def require_workspace_member(reader: StoreReader, workspace_id: int, user_id: int) -> WorkspaceMember:
    member = await reader.get_workspace_member(workspace_id, user_id)
    if member is None:
        raise NotFound("workspace not found", code="workspace_not_found")
    return member


async def require_workspace(reader: StoreReader, workspace_id: int, user_id: int) -> Workspace:
    await require_workspace_member(reader, workspace_id, user_id)
    workspace = await reader.get_workspace(workspace_id)
    if workspace is None:
        raise NotFound("workspace not found", code="workspace_not_found")
    return workspace


async def visible_conversation(reader: StoreReader, conversation_id: int, user_id: int) -> Conversation:
    """The conversation if the user may know it exists (a member, or a public channel of one of
    the user's workspaces)."""
    conversation = await reader.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound("conversation not found", code="channel_not_found")
    if await reader.is_member(conversation_id, user_id):
        return conversation
    if conversation.kind is ConversationKind.PUBLIC and await reader.get_workspace_member(
        conversation.workspace_id, user_id
    ):
        return conversation
    raise NotFound("conversation not found", code="channel_not_found")


async def readable_conversation(reader: StoreReader, conversation_id: int, user_id: int) -> Conversation:
    """The conversation if the user is a member (reading messages, posting, receiving)."""
    conversation = await reader.get_conversation(conversation_id)
    if conversation is not None and await reader.is_member(conversation_id, user_id):
        return conversation
    raise await _not_readable(reader, conversation, user_id)


async def readable_conversations(
    reader: StoreReader, pairs: Collection[tuple[int, int]]
) -> dict[tuple[int, int], Conversation | DomainError]:
    """``readable_conversation`` for many (conversation id, user id) pairs at once: one query
    however many there are (a write batch of sends checks all its senders this way)."""
    conversations, members = await reader.conversations_with_members(pairs)
    checked: dict[tuple[int, int], Conversation | DomainError] = {}
    for pair in pairs:
        conversation = conversations.get(pair[0])
        if conversation is not None and pair in members:
            checked[pair] = conversation
        else:
            checked[pair] = await _not_readable(reader, conversation, pair[1])
    return checked


async def _not_readable(reader: StoreReader, conversation: Conversation | None, user_id: int) -> DomainError:
    """Why a non-member may not read: a public channel of one's workspace must be joined first;
    anything else does not exist for them."""
    if (
        conversation is not None
        and conversation.kind is ConversationKind.PUBLIC
        and await reader.get_workspace_member(conversation.workspace_id, user_id)
    ):
        return Forbidden("join the channel first", code="not_in_channel")
    return NotFound("conversation not found", code="channel_not_found")
