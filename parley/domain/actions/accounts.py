"""Sign-up, login, token checks and logout."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from parley.domain.auth import decode_token, issue_token
from parley.domain.deps import Deps
from parley.domain.errors import Conflict, InvalidInput, NotFound, RateLimited, Unauthenticated
from parley.domain.models import User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")


async def sign_up(deps: Deps, username: str, password: str, display_name: str | None = None) -> User:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise InvalidInput("username: 2-32 characters of a-z, 0-9, '.', '_' or '-'", code="invalid_username")
    if not 8 <= len(password) <= 256:
        raise InvalidInput("password: 8 to 256 characters", code="invalid_password")
    display = (display_name or username).strip()[:128] or username
    user = User(id=deps.ids.next_id(), username=username, display_name=display, created_at=datetime.now(UTC))
    # argon2 costs ~0.1-0.2 s of CPU by design: off the event loop (argon2-cffi releases the GIL).
    password_hash = await asyncio.to_thread(deps.passwords.hash, password)
    async with deps.store.write() as tx:
        if await tx.get_user_credentials(username):
            raise Conflict("username is taken", code="username_taken")
        await tx.create_user_txn(user, password_hash)
    return user


async def log_in(
    deps: Deps, username: str, password: str, *, client_ip: str | None = None
) -> tuple[str, User]:
    """A token for the right password. Attempts are throttled per username and client address
    (``login_attempts_per_minute``), checked before the password: while throttled even the
    right password is refused (``RateLimited``), so a guesser cannot tell a hit from a miss."""
    username = username.strip().lower()
    await _throttle_login(deps, username, client_ip)
    async with deps.store.read() as reader:
        found = await reader.get_user_credentials(username)
    verified = await asyncio.to_thread(deps.passwords.verify, found[1] if found else None, password)
    if not verified or found is None:
        raise Unauthenticated("wrong username or password", code="invalid_credentials")
    token, _ = issue_token(found[0].id, deps.settings.secret_key, deps.settings.token_ttl_seconds)
    return token, found[0]


async def _throttle_login(deps: Deps, username: str, client_ip: str | None) -> None:
    # Keyed by username *and* address: with per-username keys anyone could lock the owner out.
    # Many usernames from one address are the per-address limits' job (nginx, REST middleware).
    # A successful login takes a token too (the port has no "peek"); a real user never notices.
    per_minute = deps.settings.login_attempts_per_minute
    if per_minute <= 0:
        return
    # An address never contains "|", so no username can forge another pair's key.
    key = f"login:{client_ip or '-'}|{username}"
    wait = await deps.rate_limiter.acquire(key, per_minute / 60, per_minute)
    if wait > 0:
        raise RateLimited("too many login attempts; retry later", retry_after=wait)


async def authenticate(deps: Deps, token: str) -> User:
    """The user behind a bearer token; raises ``Unauthenticated`` for expired, forged or revoked ones."""
    claims = decode_token(token, deps.settings.secret_key)
    async with deps.store.read() as reader:
        if await reader.is_token_revoked(claims.jti):
            raise Unauthenticated("token revoked", code="token_revoked")
        user = await reader.get_user(claims.user_id)
    if user is None:
        raise Unauthenticated("invalid token", code="invalid_token")
    return user


async def log_out(deps: Deps, token: str) -> None:
    claims = decode_token(token, deps.settings.secret_key)
    async with deps.store.write() as tx:
        await tx.revoke_token_txn(claims.jti, claims.expires_at)


async def get_user(deps: Deps, actor: User, user_id: int) -> User:
    """A user the actor shares a workspace with (others do not exist, as far as they know)."""
    async with deps.store.read() as reader:
        user = await reader.get_user(user_id)
        if user is not None and user_id != actor.id:
            mine = {w.id for w in await reader.list_user_workspaces(actor.id)}
            theirs = {w.id for w in await reader.list_user_workspaces(user_id)}
            if not mine & theirs:
                user = None
    if user is None:
        raise NotFound("user not found", code="user_not_found")
    return user
