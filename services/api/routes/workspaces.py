"""Workspaces, invites, members, and the conversations inside a workspace."""

from __future__ import annotations

from fastapi import APIRouter

from parley.domain.actions import conversations, ephemeral, workspaces
from parley.domain.models import Conversation, Id, Workspace
from services.api.deps import ActorDep, DepsDep
from services.api.schemas import (
    ChannelCreate,
    ConversationPublic,
    DmOpen,
    InviteAccept,
    InvitePublic,
    MemberAdd,
    WorkspaceCreate,
    WorkspaceMemberPublic,
)

router = APIRouter(prefix="/workspaces", tags=["workspaces"])


@router.post("", status_code=201, response_model=Workspace)
async def create_workspace(body: WorkspaceCreate, deps: DepsDep, actor: ActorDep) -> Workspace:
    return await workspaces.create_workspace(deps, actor, body.name, body.slug)


@router.get("", response_model=list[Workspace])
async def list_workspaces(deps: DepsDep, actor: ActorDep) -> list[Workspace]:
    return await workspaces.list_workspaces(deps, actor)


@router.post("/join", response_model=Workspace)
async def join_workspace(body: InviteAccept, deps: DepsDep, actor: ActorDep) -> Workspace:
    return await workspaces.join_with_invite(deps, actor, body.code)


@router.get("/{workspace_id}", response_model=Workspace)
async def get_workspace(workspace_id: Id, deps: DepsDep, actor: ActorDep) -> Workspace:
    return await workspaces.get_workspace(deps, actor, workspace_id)


@router.post("/{workspace_id}/invites", status_code=201, response_model=InvitePublic)
async def create_invite(workspace_id: Id, deps: DepsDep, actor: ActorDep) -> InvitePublic:
    invite = await workspaces.create_invite(deps, actor, workspace_id)
    return InvitePublic(code=invite.code, workspace_id=invite.workspace_id, expires_at=invite.expires_at)


@router.get("/{workspace_id}/members", response_model=list[WorkspaceMemberPublic])
async def list_members(workspace_id: Id, deps: DepsDep, actor: ActorDep) -> list[WorkspaceMemberPublic]:
    members = await workspaces.list_workspace_members(deps, actor, workspace_id)
    return [WorkspaceMemberPublic(user=u, role=m.role, joined_at=m.joined_at) for m, u in members]


@router.post("/{workspace_id}/members", status_code=201, response_model=WorkspaceMemberPublic)
async def add_member(
    workspace_id: Id, body: MemberAdd, deps: DepsDep, actor: ActorDep
) -> WorkspaceMemberPublic:
    member = await workspaces.add_workspace_member(deps, actor, workspace_id, body.username)
    users = await workspaces.list_workspace_members(deps, actor, workspace_id)
    user = next(u for m, u in users if m.user_id == member.user_id)
    return WorkspaceMemberPublic(user=user, role=member.role, joined_at=member.joined_at)


@router.get("/{workspace_id}/presence", response_model=dict[str, str])
async def presence(workspace_id: Id, deps: DepsDep, actor: ActorDep) -> dict[str, str]:
    """Every member's status: online, away or offline."""
    statuses = await ephemeral.get_presence(deps, actor, workspace_id)
    return {str(uid): status for uid, status in statuses.items()}


@router.get("/{workspace_id}/conversations", response_model=list[ConversationPublic])
async def list_conversations(workspace_id: Id, deps: DepsDep, actor: ActorDep) -> list[ConversationPublic]:
    views = await conversations.list_conversations(deps, actor, workspace_id)
    return [ConversationPublic.of(v) for v in views]


@router.post("/{workspace_id}/channels", status_code=201, response_model=Conversation)
async def create_channel(
    workspace_id: Id, body: ChannelCreate, deps: DepsDep, actor: ActorDep
) -> Conversation:
    return await conversations.create_channel(
        deps, actor, workspace_id, body.name, private=body.private, topic=body.topic
    )


@router.post("/{workspace_id}/dms", response_model=Conversation)
async def open_dm(workspace_id: Id, body: DmOpen, deps: DepsDep, actor: ActorDep) -> Conversation:
    return await conversations.open_dm(deps, actor, workspace_id, list(body.user_ids))
