"""Who may see and do what. Every action and every read goes through these checks, so REST,
WebSocket, search and resume cannot disagree.

Rules: workspace content is visible to workspace members only; a conversation's messages,
events and search hits only to its members; public channels are visible (listed, joinable) to
every workspace member; private conversations do not exist for non-members (404, not 403).
"""

from __future__ import annotations

from parley.domain.errors import Forbidden, NotFound
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
    """The conversation if the user is a member (reading messages, posting, receiving).

    On the hot path of every send: two indexed lookups when the user is a member."""
    conversation = await reader.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound("conversation not found", code="channel_not_found")
    if await reader.is_member(conversation_id, user_id):
        return conversation
    if conversation.kind is ConversationKind.PUBLIC and await reader.get_workspace_member(
        conversation.workspace_id, user_id
    ):
        raise Forbidden("join the channel first", code="not_in_channel")
    raise NotFound("conversation not found", code="channel_not_found")
