"""One conversation: info, join/leave, members, history, sending, read markers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from parley.domain.actions import conversations, messages
from parley.domain.models import Conversation, Id, Message, ReadMarker, User
from parley.runtime import metrics
from services.api.deps import ActorDep, DepsDep
from services.api.schemas import (
    ConversationMemberAdd,
    ConversationPublic,
    HistoryPublic,
    MessageCreate,
    ReadMarkerSet,
)

router = APIRouter(prefix="/conversations", tags=["conversations"])


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(conversation_id: Id, deps: DepsDep, actor: ActorDep) -> ConversationPublic:
    v = await conversations.get_conversation(deps, actor, conversation_id)
    return ConversationPublic.of(v)


@router.post("/{conversation_id}/join", response_model=Conversation)
async def join(conversation_id: Id, deps: DepsDep, actor: ActorDep) -> Conversation:
    return await conversations.join(deps, actor, conversation_id)


@router.post("/{conversation_id}/leave", status_code=204)
async def leave(conversation_id: Id, deps: DepsDep, actor: ActorDep) -> Response:
    await conversations.leave(deps, actor, conversation_id)
    return Response(status_code=204)


@router.get("/{conversation_id}/members", response_model=list[User])
async def members(conversation_id: Id, deps: DepsDep, actor: ActorDep) -> list[User]:
    return await conversations.list_members(deps, actor, conversation_id)


@router.post("/{conversation_id}/members", response_model=Conversation)
async def add_member(
    conversation_id: Id, body: ConversationMemberAdd, deps: DepsDep, actor: ActorDep
) -> Conversation:
    return await conversations.add_member(deps, actor, conversation_id, body.user_id)


@router.get("/{conversation_id}/messages", response_model=HistoryPublic)
async def history(
    conversation_id: Id,
    deps: DepsDep,
    actor: ActorDep,
    before: Annotated[int | None, Query(ge=0, lt=2**63, description="messages with seq below this")] = None,
    after: Annotated[
        int | None, Query(ge=0, lt=2**63, description="messages with seq above this, oldest first")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> HistoryPublic:
    page = await messages.history(
        deps, actor, conversation_id, before_seq=before, after_seq=after, limit=limit
    )
    return HistoryPublic(messages=page.messages, has_more=page.has_more)


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=Message,
    responses={200: {"description": "a retry: the message stored earlier with this client_msg_id"}},
)
async def send(
    conversation_id: Id, body: MessageCreate, deps: DepsDep, actor: ActorDep, response: Response
) -> Message:
    message, created = await messages.send_message(
        deps,
        actor,
        conversation_id,
        body.text,
        client_msg_id=body.client_msg_id,
        thread_root_id=body.thread_root_id,
    )
    if created:
        metrics.SENDS.labels("rest").inc()
    else:
        response.status_code = 200
    return message


@router.post("/{conversation_id}/read", response_model=ReadMarker)
async def mark_read(conversation_id: Id, body: ReadMarkerSet, deps: DepsDep, actor: ActorDep) -> ReadMarker:
    return await messages.mark_read(deps, actor, conversation_id, body.seq)
