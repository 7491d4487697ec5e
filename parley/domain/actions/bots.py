"""Bots: users driven by programs through API tokens, one set per workspace.

A bot is created with its bot token (``xoxb-``) and its app-level token (``xapp-``, for Socket
Mode); both are returned once and only their hashes are kept. Also here: the workspace
directory as API clients see it (each member with role and, for bots, the bot record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from parley.domain.actions.accounts import USERNAME
from parley.domain.deps import Deps
from parley.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.domain.integrations import (
    DEFAULT_BOT_EVENTS,
    KNOWN_BOT_EVENTS,
    ApiToken,
    Bot,
    TokenKind,
    hash_token,
    new_token,
)
from parley.domain.models import Role, User, Workspace
from parley.domain.permissions import require_workspace_member

# Not an argon2 hash, so verification always fails: a bot has no password login.
UNUSABLE_PASSWORD_HASH = "!"


@dataclass(frozen=True, slots=True)
class BotCredentials:
    bot: Bot
    user: User
    bot_token: str  # shown once
    app_token: str  # shown once


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    user: User
    role: Role
    bot: Bot | None


def _check_events(event_types: Sequence[str] | None) -> tuple[str, ...]:
    if not event_types:
        return DEFAULT_BOT_EVENTS
    events = tuple(dict.fromkeys(e.strip() for e in event_types if e.strip()))
    unknown = sorted(set(events) - KNOWN_BOT_EVENTS)
    if unknown or not events:
        raise InvalidInput(
            f"unknown event types {unknown}; known: {sorted(KNOWN_BOT_EVENTS)}", code="invalid_event_type"
        )
    return events


async def create_bot(
    deps: Deps,
    actor: User | None,
    workspace_id: int,
    name: str,
    *,
    event_types: Sequence[str] | None = None,
) -> BotCredentials:
    """Create a bot user in a workspace with its bot and app tokens.

    ``actor`` must own the workspace; ``None`` means the operator (a command run with direct
    access to the store), who may add a bot to any workspace.
    """
    name = name.strip().lower()
    if not USERNAME.match(name):
        raise InvalidInput("bot name: 2-32 characters of a-z, 0-9, '.', '_' or '-'", code="invalid_name")
    events = _check_events(event_types)
    now = datetime.now(UTC)
    user = User(id=deps.ids.next_id(), username=name, display_name=name, created_at=now)
    bot = Bot(
        user_id=user.id,
        workspace_id=workspace_id,
        name=name,
        event_types=events,
        created_by=actor.id if actor else None,
        created_at=now,
    )
    bot_token, app_token = new_token(TokenKind.BOT), new_token(TokenKind.APP)
    async with deps.store.write() as tx:
        if await tx.get_workspace(workspace_id) is None:
            raise NotFound("workspace not found", code="workspace_not_found")
        if actor is not None:
            member = await require_workspace_member(tx, workspace_id, actor.id)
            if member.role is not Role.OWNER:
                raise Forbidden("only workspace owners can create bots", code="not_owner")
        if await tx.get_user_credentials(name):
            raise Conflict("a user or bot with this name exists", code="username_taken")
        await tx.create_user_txn(user, UNUSABLE_PASSWORD_HASH)
        await tx.add_workspace_member_txn(workspace_id, user.id, Role.MEMBER)
        await tx.create_bot_txn(bot)
        for token, kind in ((bot_token, TokenKind.BOT), (app_token, TokenKind.APP)):
            await tx.create_api_token_txn(
                ApiToken(
                    token_hash=hash_token(token),
                    kind=kind,
                    user_id=user.id,
                    workspace_id=workspace_id,
                    created_at=now,
                )
            )
    return BotCredentials(bot=bot, user=user, bot_token=bot_token, app_token=app_token)


async def workspace_by_slug(deps: Deps, slug: str) -> Workspace:
    """For operator commands, which name workspaces by slug."""
    async with deps.store.read() as reader:
        workspace = await reader.get_workspace_by_slug(slug.strip().lower())
    if workspace is None:
        raise NotFound("workspace not found", code="workspace_not_found")
    return workspace


async def bots_among(deps: Deps, user_ids: Sequence[int]) -> dict[int, Bot]:
    """Which of these users are bots (whether someone is a bot is public in a workspace)."""
    async with deps.store.read() as reader:
        return {b.user_id: b for b in await reader.get_bots(sorted(set(user_ids)))}


async def directory(deps: Deps, actor: User, workspace_id: int) -> list[DirectoryEntry]:
    """Every member of a workspace the actor belongs to, with role and bot record."""
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        members = await reader.list_workspace_members(workspace_id)
        user_ids = [m.user_id for m in members]
        users = {u.id: u for u in await reader.get_users(user_ids)}
        bots = {b.user_id: b for b in await reader.get_bots(user_ids)}
    return [
        DirectoryEntry(users[m.user_id], m.role, bots.get(m.user_id)) for m in members if m.user_id in users
    ]


async def directory_entry(deps: Deps, actor: User, workspace_id: int, user_id: int) -> DirectoryEntry:
    """One member of the actor's workspace; users outside it do not exist for the actor."""
    async with deps.store.read() as reader:
        await require_workspace_member(reader, workspace_id, actor.id)
        member = await reader.get_workspace_member(workspace_id, user_id)
        user = await reader.get_user(user_id) if member else None
        bots = await reader.get_bots([user_id]) if user else []
    if member is None or user is None:
        raise NotFound("user not found", code="user_not_found")
    return DirectoryEntry(user, member.role, bots[0] if bots else None)
