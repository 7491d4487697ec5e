"""API tokens: issue user tokens, authenticate any token, revoke, and Socket Mode tickets.

Every API token belongs to one user in one workspace (Slack's tokens are per workspace too),
and stops working when that user leaves the workspace. A Socket Mode ticket is a short-lived
signed claim ("this app token may open a socket") so that any node behind the load balancer
can accept the socket without shared state; it names the token's hash, so revoking the app
token also refuses tickets issued before.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from parley.domain.deps import Deps
from parley.domain.errors import Forbidden, Unauthenticated
from parley.domain.integrations import ApiToken, Bot, TokenKind, hash_token, new_token, token_kind
from parley.domain.models import Role, User, Workspace
from parley.domain.permissions import require_workspace
from parley.ports.store import StoreReader

SOCKET_TICKET_TTL = timedelta(seconds=60)
_TICKET_TYPE = "socket-mode"


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """Who is behind a token: the user, the workspace the token is for, and the bot record."""

    token: ApiToken
    user: User
    workspace: Workspace
    role: Role
    bot: Bot | None


async def issue_user_token(deps: Deps, actor: User, workspace_id: int) -> str:
    """A new user token (``xoxp-``) for the actor in one of their workspaces; shown once."""
    token = new_token(TokenKind.USER)
    async with deps.store.write() as tx:
        await require_workspace(tx, workspace_id, actor.id)
        bots = await tx.get_bots([actor.id])
        if bots:
            raise Forbidden("bots use their bot token", code="not_allowed_token_type")
        await tx.create_api_token_txn(
            ApiToken(
                token_hash=hash_token(token),
                kind=TokenKind.USER,
                user_id=actor.id,
                workspace_id=workspace_id,
                created_at=datetime.now(UTC),
            )
        )
    return token


async def authenticate_api_token(
    deps: Deps, token: str, *, kinds: Collection[TokenKind] | None = None
) -> ApiCaller:
    """The caller behind ``token``; ``Unauthenticated(invalid_auth)`` for unknown or revoked
    tokens and for users no longer in the token's workspace, ``Forbidden`` for a kind that is
    not in ``kinds``."""
    if token_kind(token) is None:
        raise Unauthenticated("invalid token", code="invalid_auth")
    async with deps.store.read() as reader:
        row = await reader.get_api_token(hash_token(token))
        if row is None:
            raise Unauthenticated("invalid token", code="invalid_auth")
        caller = await _caller(reader, row)
    if kinds is not None and row.kind not in kinds:
        raise Forbidden("this method does not accept this kind of token", code="not_allowed_token_type")
    return caller


async def _caller(store: StoreReader, row: ApiToken) -> ApiCaller:
    user = await store.get_user(row.user_id)
    member = await store.get_workspace_member(row.workspace_id, row.user_id)
    workspace = await store.get_workspace(row.workspace_id)
    if user is None or member is None or workspace is None:
        raise Unauthenticated("the token's user is no longer in its workspace", code="invalid_auth")
    bots = await store.get_bots([user.id])
    bot = bots[0] if bots else None
    return ApiCaller(token=row, user=user, workspace=workspace, role=member.role, bot=bot)


async def revoke_api_token(deps: Deps, token: str) -> bool:
    async with deps.store.write() as tx:
        return await tx.delete_api_token_txn(hash_token(token))


def socket_ticket(deps: Deps, caller: ApiCaller) -> str:
    """A ticket that lets the app behind an app-level token open one Socket Mode connection."""
    if caller.token.kind is not TokenKind.APP:
        raise Forbidden("Socket Mode needs an app-level token (xapp-)", code="not_allowed_token_type")
    now = datetime.now(UTC)
    return jwt.encode(
        {
            "typ": _TICKET_TYPE,
            "sub": caller.token.token_hash,
            "jti": secrets.token_hex(8),
            "iat": now,
            "exp": now + SOCKET_TICKET_TTL,
        },
        deps.settings.secret_key,
        algorithm="HS256",
    )


async def redeem_socket_ticket(deps: Deps, ticket: str) -> ApiCaller:
    try:
        claims = jwt.decode(
            ticket, deps.settings.secret_key, algorithms=["HS256"], options={"require": ["sub", "exp", "typ"]}
        )
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("invalid or expired ticket", code="invalid_auth") from exc
    if claims.get("typ") != _TICKET_TYPE:
        raise Unauthenticated("invalid ticket", code="invalid_auth")
    async with deps.store.read() as reader:
        row = await reader.get_api_token(str(claims["sub"]))
        if row is None or row.kind is not TokenKind.APP:
            raise Unauthenticated("the app token was revoked", code="invalid_auth")
        return await _caller(reader, row)
