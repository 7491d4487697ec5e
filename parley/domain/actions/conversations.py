"""Channels, DMs and group DMs: create, open, join, leave, add members, list."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from parley.domain.actions._events import append_event_txn, new_event
from parley.domain.deps import Deps
from parley.domain.errors import Forbidden, InvalidInput, NotFound
from parley.domain.events import EventType
from parley.domain.models import Conversation, ConversationKind, User
from parley.domain.permissions import (
    readable_conversation,
    require_workspace_member,
    visible_conversation,
)
from parley.ports.store import StoreWriter

CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
MAX_GROUP_DM = 9  # Slack's limit: you plus eight others
DM_KINDS = (ConversationKind.DM, ConversationKind.GROUP_DM)


@dataclass(frozen=True, slots=True)
class ConversationView:
    conversation: Conversation
    is_member: bool
    last_read_seq: int
    unread_count: int
    # DMs and group DMs are named by their members, so clients get them with the list.
    member_ids: list[int] | None = None


async def create_channel(
    deps: Deps, actor: User, workspace_id: int, name: str, *, private: bool = False, topic: str = ""
) -> Conversation:
    name = name.strip().lstrip("#").lower()
    if not CHANNEL_NAME.match(name):
        raise InvalidInput("channel name: 1-80 characters of a-z, 0-9, '.', '_' or '-'", code="invalid_name")
    if len(topic) > 250:
        raise InvalidInput("topic: at most 250 characters", code="invalid_topic")
    kind = ConversationKind.PRIVATE if private else ConversationKind.PUBLIC
    async with deps.store.write() as tx:
        await require_workspace_member(tx, workspace_id, actor.id)
        conversation = await _create_txn(deps, tx, actor, workspace_id, kind, name, topic, [actor.id], None)
    deps.outbox_written()
    return conversation


async def open_dm(deps: Deps, actor: User, workspace_id: int, user_ids: list[int]) -> Conversation:
    """The DM (one other user) or group DM (2-8 others) with exactly these members, created
    on first use; opening it again returns the same conversation, with anyone who had left it
    back in."""
    members = sorted({actor.id, *user_ids})
    if len(members) < 2 and user_ids != [actor.id]:
        raise InvalidInput("name at least one other user", code="invalid_users")
    if len(members) > MAX_GROUP_DM:
        raise InvalidInput(f"a group DM has at most {MAX_GROUP_DM} members", code="too_many_users")
    kind = ConversationKind.DM if len(members) <= 2 else ConversationKind.GROUP_DM
    dm_key = _dm_key(members)
    async with deps.store.write() as tx:
        await require_workspace_member(tx, workspace_id, actor.id)
        for user_id in members:
            if await tx.get_workspace_member(workspace_id, user_id) is None:
                raise NotFound("user not found in this workspace", code="user_not_found")
        existing = await tx.find_dm(workspace_id, dm_key)
        if existing is None:
            conversation = await _create_txn(deps, tx, actor, workspace_id, kind, None, "", members, dm_key)
        else:
            # Members who left a group DM are brought back: it is the conversation of exactly
            # these people (handing it back without them left a caller locked out of it).
            missing = [user_id for user_id in members if not await tx.is_member(existing.id, user_id)]
            if not missing:
                return existing
            conversation = existing
            for user_id in missing:
                conversation = await _add_member_txn(deps, tx, conversation, user_id)
    deps.outbox_written()
    return conversation


async def existing_dm(deps: Deps, actor: User, workspace_id: int, other_id: int) -> Conversation | None:
    """The actor's DM with ``other_id`` (or with themselves) if it exists and the actor is in it.
    Never creates one: for reads that name a DM (a search's ``in:@user``)."""
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        dm = await reader.find_dm(workspace_id, _dm_key({actor.id, other_id}))
        if dm is None or not await reader.is_member(dm.id, actor.id):
            return None
    return dm


def _dm_key(members: Iterable[int]) -> str:
    return ":".join(str(m) for m in sorted(members))


async def _create_txn(
    deps: Deps,
    tx: StoreWriter,
    actor: User,
    workspace_id: int,
    kind: ConversationKind,
    name: str | None,
    topic: str,
    member_ids: list[int],
    dm_key: str | None,
) -> Conversation:
    conversation = Conversation(
        id=deps.ids.next_id(),
        workspace_id=workspace_id,
        kind=kind,
        name=name,
        topic=topic,
        created_by=actor.id,
        created_at=datetime.now(UTC),
        last_seq=1,
    )
    await tx.create_conversation_txn(conversation, dm_key)  # raises Conflict(name_taken)
    for user_id in member_ids:
        await tx.add_member_txn(conversation.id, user_id, last_read_seq=1)
    # seq 1 of every conversation is its creation; members are told through their user channel.
    event = new_event(
        deps.ids,
        EventType.CONVERSATION_CREATED,
        workspace_id=workspace_id,
        conversation_id=conversation.id,
        seq=1,
        data={
            "conversation": conversation.model_dump(mode="json"),
            "member_ids": [str(m) for m in member_ids],
        },
    )
    await tx.append_events_txn([event])
    return conversation


async def join(deps: Deps, actor: User, conversation_id: int) -> Conversation:
    async with deps.store.write() as tx:
        conversation = await visible_conversation(tx, conversation_id, actor.id)
        if await tx.is_member(conversation_id, actor.id):
            return conversation
        if conversation.kind is not ConversationKind.PUBLIC:
            raise NotFound("conversation not found", code="channel_not_found")
        conversation = await _add_member_txn(deps, tx, conversation, actor.id)
    deps.outbox_written()
    return conversation


async def add_member(deps: Deps, actor: User, conversation_id: int, user_id: int) -> Conversation:
    """A member invites another workspace member into a channel (public or private)."""
    async with deps.store.write() as tx:
        conversation = await readable_conversation(tx, conversation_id, actor.id)
        if conversation.kind in DM_KINDS:
            raise Forbidden("DM membership is fixed; open a new group DM", code="cant_invite")
        if await tx.get_workspace_member(conversation.workspace_id, user_id) is None:
            raise NotFound("user not found in this workspace", code="user_not_found")
        if await tx.is_member(conversation_id, user_id):
            return conversation
        conversation = await _add_member_txn(deps, tx, conversation, user_id)
    deps.outbox_written()
    return conversation


async def _add_member_txn(
    deps: Deps, tx: StoreWriter, conversation: Conversation, user_id: int
) -> Conversation:
    event = await append_event_txn(
        deps,
        tx,
        EventType.MEMBER_JOINED,
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        data={"user_id": str(user_id), "conversation": conversation.model_dump(mode="json")},
    )
    assert event.seq is not None
    # A new member has read everything before joining; the join event is their first event.
    await tx.add_member_txn(conversation.id, user_id, last_read_seq=event.seq - 1)
    return conversation.model_copy(update={"last_seq": event.seq})


async def leave(deps: Deps, actor: User, conversation_id: int) -> None:
    async with deps.store.write() as tx:
        conversation = await readable_conversation(tx, conversation_id, actor.id)
        if conversation.kind is ConversationKind.DM:
            raise Forbidden("a DM cannot be left", code="cant_leave_dm")
        await append_event_txn(
            deps,
            tx,
            EventType.MEMBER_LEFT,
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            data={"user_id": str(actor.id), "conversation": conversation.model_dump(mode="json")},
        )
        await tx.remove_member_txn(conversation_id, actor.id)
    deps.outbox_written()


async def get_conversation(deps: Deps, actor: User, conversation_id: int) -> ConversationView:
    async with deps.store.read() as reader:
        conversation = await visible_conversation(reader, conversation_id, actor.id)
        memberships = {m.conversation.id: m for m in await reader.list_memberships(actor.id)}
        unread = await reader.unread_counts(actor.id) if conversation_id in memberships else {}
        dm_members = await reader.member_ids(conversation_id) if conversation.kind in DM_KINDS else None
    membership = memberships.get(conversation_id)
    return ConversationView(
        conversation=conversation,
        is_member=membership is not None,
        last_read_seq=membership.last_read_seq if membership else 0,
        unread_count=unread.get(conversation_id, 0),
        member_ids=dm_members,
    )


async def list_conversations(
    deps: Deps, actor: User, workspace_id: int, *, include_public: bool = True
) -> list[ConversationView]:
    """The user's conversations in a workspace with unread counts, then public channels they
    could join."""
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        memberships = await reader.list_memberships(actor.id, workspace_id)
        unread = await reader.unread_counts(actor.id)
        public = await reader.list_public_conversations(workspace_id) if include_public else []
        dm_members = {
            m.conversation.id: await reader.member_ids(m.conversation.id)
            for m in memberships
            if m.conversation.kind in DM_KINDS
        }
    mine = {m.conversation.id for m in memberships}
    views = [
        ConversationView(
            m.conversation,
            True,
            m.last_read_seq,
            unread.get(m.conversation.id, 0),
            dm_members.get(m.conversation.id),
        )
        for m in memberships
    ]
    views += [ConversationView(c, False, 0, 0) for c in public if c.id not in mine]
    return views


async def list_members(deps: Deps, actor: User, conversation_id: int) -> list[User]:
    async with deps.store.read() as reader:
        await visible_conversation(reader, conversation_id, actor.id)
        return await reader.get_users(await reader.member_ids(conversation_id))
