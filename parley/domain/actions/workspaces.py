"""Workspaces: create, invite, join, list members."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from parley.domain.deps import Deps
from parley.domain.errors import Forbidden, InvalidInput, NotFound
from parley.domain.models import Role, User, Workspace, WorkspaceMember
from parley.domain.permissions import require_workspace, require_workspace_member
from parley.ports.store import Invite

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
INVITE_TTL = timedelta(days=7)


async def create_workspace(deps: Deps, actor: User, name: str, slug: str | None = None) -> Workspace:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidInput("name: 1 to 128 characters", code="invalid_name")
    slug = (slug or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")).lower()
    if not SLUG.match(slug):
        raise InvalidInput("slug: 2-63 characters of a-z, 0-9 and '-'", code="invalid_slug")
    workspace = Workspace(
        id=deps.ids.next_id(), name=name, slug=slug, created_by=actor.id, created_at=datetime.now(UTC)
    )
    async with deps.store.write() as tx:
        await tx.create_workspace_txn(workspace)  # raises Conflict(slug_taken)
        await tx.add_workspace_member_txn(workspace.id, actor.id, Role.OWNER)
    return workspace


async def list_workspaces(deps: Deps, actor: User) -> list[Workspace]:
    async with deps.store.read() as reader:
        return await reader.list_user_workspaces(actor.id)


async def get_workspace(deps: Deps, actor: User, workspace_id: int) -> Workspace:
    async with deps.store.read() as reader:
        return await require_workspace(reader, workspace_id, actor.id)


async def create_invite(deps: Deps, actor: User, workspace_id: int) -> Invite:
    invite = Invite(
        code=secrets.token_urlsafe(16),
        workspace_id=workspace_id,
        created_by=actor.id,
        expires_at=datetime.now(UTC) + INVITE_TTL,
    )
    async with deps.store.write() as tx:
        await require_workspace_member(tx, workspace_id, actor.id)
        await tx.create_invite_txn(invite)
    return invite


async def join_with_invite(deps: Deps, actor: User, code: str) -> Workspace:
    async with deps.store.write() as tx:
        invite = await tx.get_invite(code)
        if invite is None or invite.expires_at < datetime.now(UTC):
            raise NotFound("invite not found or expired", code="invite_not_found")
        await tx.add_workspace_member_txn(invite.workspace_id, actor.id, Role.MEMBER)
        workspace = await tx.get_workspace(invite.workspace_id)
    if workspace is None:
        raise NotFound("workspace not found", code="workspace_not_found")
    return workspace


async def add_workspace_member(deps: Deps, actor: User, workspace_id: int, username: str) -> WorkspaceMember:
    """An owner adds a user directly (the invite link is the self-service path)."""
    async with deps.store.write() as tx:
        me = await require_workspace_member(tx, workspace_id, actor.id)
        if me.role is not Role.OWNER:
            raise Forbidden("only workspace owners can add members directly", code="not_owner")
        found = await tx.get_users_by_username([username.strip().lower()])
        if not found:
            raise NotFound("user not found", code="user_not_found")
        await tx.add_workspace_member_txn(workspace_id, found[0].id, Role.MEMBER)
        member = await tx.get_workspace_member(workspace_id, found[0].id)
    assert member is not None
    return member


async def list_workspace_members(
    deps: Deps, actor: User, workspace_id: int
) -> list[tuple[WorkspaceMember, User]]:
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        members = await reader.list_workspace_members(workspace_id)
        users = {u.id: u for u in await reader.get_users([m.user_id for m in members])}
    return [(m, users[m.user_id]) for m in members if m.user_id in users]
