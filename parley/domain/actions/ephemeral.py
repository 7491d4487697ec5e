"""Typing and presence: ephemeral events published straight to pub/sub (never stored,
never replayed — losing one is harmless, delaying a message for one is not)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from parley.domain.deps import Deps
from parley.domain.errors import InvalidInput
from parley.domain.events import Event, EventType
from parley.domain.models import User
from parley.domain.permissions import readable_conversation, require_workspace_member
from parley.ports.pubsub import conversation_channel, workspace_channel

log = logging.getLogger(__name__)
STATUSES = frozenset({"online", "away", "offline"})


async def send_typing(
    deps: Deps, actor: User, conversation_id: int, thread_root_id: int | None = None
) -> None:
    async with deps.store.read() as reader:
        conversation = await readable_conversation(reader, conversation_id, actor.id)
    event = Event(
        type=EventType.TYPING,
        event_id=deps.ids.next_id(),
        workspace_id=conversation.workspace_id,
        conversation_id=conversation_id,
        ts=datetime.now(UTC),
        data={"user_id": str(actor.id), "thread_root_id": str(thread_root_id) if thread_root_id else None},
    )
    await _publish(deps, [(conversation_channel(conversation_id), event.to_bytes())])


async def set_presence(deps: Deps, actor: User, status: str) -> None:
    if status not in STATUSES:
        raise InvalidInput("status: online, away or offline", code="invalid_status")
    await deps.presence.set(actor.id, status, deps.settings.presence_ttl_seconds)
    async with deps.store.read() as reader:
        workspaces = await reader.list_user_workspaces(actor.id)
    now = datetime.now(UTC)
    await _publish(
        deps,
        [
            (
                workspace_channel(w.id),
                Event(
                    type=EventType.PRESENCE,
                    event_id=deps.ids.next_id(),
                    workspace_id=w.id,
                    ts=now,
                    data={"user_id": str(actor.id), "status": status},
                ).to_bytes(),
            )
            for w in workspaces
        ],
    )


async def get_presence(deps: Deps, actor: User, workspace_id: int) -> dict[int, str]:
    """Status of every member of a workspace the actor belongs to (absent → offline)."""
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        members = [m.user_id for m in await reader.list_workspace_members(workspace_id)]
    statuses = await deps.presence.get_many(members)
    return {uid: statuses.get(uid, "offline") for uid in members}


async def _publish(deps: Deps, items: list[tuple[str, bytes]]) -> None:
    """Ephemeral events are best effort: a pub/sub outage drops them (logged), never fails the
    caller — a socket must not die because Redis is restarting."""
    try:
        await deps.pubsub.publish_many(items)
    except Exception as exc:
        log.warning("ephemeral event dropped: pub/sub unavailable (%s)", exc)
