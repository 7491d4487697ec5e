"""One message: read, edit, delete, thread replies, reactions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from parley.domain.actions import messages
from parley.domain.models import Id, Message
from services.api.deps import ActorDep, DepsDep
from services.api.schemas import MessageEdit, ReactionCreate, ThreadPublic

router = APIRouter(prefix="/messages", tags=["messages"])


@router.get("/{message_id}", response_model=Message)
async def get_message(message_id: Id, deps: DepsDep, actor: ActorDep) -> Message:
    return await messages.get_message(deps, actor, message_id)


@router.patch("/{message_id}", response_model=Message)
async def edit(message_id: Id, body: MessageEdit, deps: DepsDep, actor: ActorDep) -> Message:
    return await messages.edit_message(deps, actor, message_id, body.text)


@router.delete("/{message_id}", response_model=Message)
async def delete(message_id: Id, deps: DepsDep, actor: ActorDep) -> Message:
    return await messages.delete_message(deps, actor, message_id)


@router.get("/{message_id}/replies", response_model=ThreadPublic)
async def replies(
    message_id: Id,
    deps: DepsDep,
    actor: ActorDep,
    after: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ThreadPublic:
    root, page = await messages.thread_replies(deps, actor, message_id, after_seq=after, limit=limit)
    return ThreadPublic(root=root, replies=page.messages, has_more=page.has_more)


@router.post("/{message_id}/reactions", status_code=204)
async def add_reaction(message_id: Id, body: ReactionCreate, deps: DepsDep, actor: ActorDep) -> Response:
    await messages.add_reaction(deps, actor, message_id, body.emoji)
    return Response(status_code=204)


@router.delete("/{message_id}/reactions/{emoji}", status_code=204)
async def remove_reaction(message_id: Id, emoji: str, deps: DepsDep, actor: ActorDep) -> Response:
    await messages.remove_reaction(deps, actor, message_id, emoji)
    return Response(status_code=204)
