"""Setting up a scenario through Parley's public API: accounts, a workspace, a channel, sockets.

Set-up is not measured; it only has to be quick and bounded. Sign-ups hash a password
(argon2, ~0.2 s of CPU each), so they run a few at a time, not all at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

T = TypeVar("T")
PASSWORD = "bench-password-123"
SETUP_CONCURRENCY = 4
_accounts = itertools.count()


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Room:
    """A workspace with one public channel that every account has joined."""

    workspace_id: str
    conversation_id: str
    owner: Account
    members: list[Account]


def api(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{base_url}/api/v1",
        timeout=30,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )


async def bounded(calls: Sequence[Callable[[], Awaitable[T]]], concurrency: int = SETUP_CONCURRENCY) -> list[T]:
    """Run ``calls`` with at most ``concurrency`` in flight; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _ok(response: Awaitable[httpx.Response]) -> Any:
    r = await response
    if r.status_code >= 300:
        raise RuntimeError(f"{r.request.method} {r.request.url.path} → {r.status_code}: {r.text[:300]}")
    return r.json() if r.content else None


async def sign_up(http: httpx.AsyncClient, prefix: str) -> Account:
    username = f"{prefix}{next(_accounts)}"
    body = await _ok(http.post("/auth/signup", json={"username": username, "password": PASSWORD}))
    return Account(body["user"]["id"], username, body["token"])


async def sign_up_many(http: httpx.AsyncClient, prefix: str, count: int) -> list[Account]:
    return await bounded([lambda: sign_up(http, prefix) for _ in range(count)])


async def create_room(http: httpx.AsyncClient, accounts: Sequence[Account], name: str = "bench") -> Room:
    """``accounts[0]`` creates a workspace and a public channel; the others join both."""
    owner, others = accounts[0], accounts[1:]
    workspace = await _ok(http.post("/workspaces", json={"name": f"{name} space"}, headers=owner.headers))
    invite = await _ok(http.post(f"/workspaces/{workspace['id']}/invites", headers=owner.headers))
    await bounded(
        [
            lambda a=a: _ok(http.post("/workspaces/join", json={"code": invite["code"]}, headers=a.headers))
            for a in others
        ],
        concurrency=16,
    )
    channel = await _ok(
        http.post(
            f"/workspaces/{workspace['id']}/channels",
            json={"name": name, "private": False},
            headers=owner.headers,
        )
    )
    await bounded(
        [lambda a=a: _ok(http.post(f"/conversations/{channel['id']}/join", headers=a.headers)) for a in others],
        concurrency=16,
    )
    return Room(workspace["id"], channel["id"], owner, list(accounts))


async def open_socket(ws_url: str, account: Account, *, compression: bool) -> ClientConnection:
    """An authenticated socket, after its ``hello`` frame (the server follows the account's
    conversations before saying hello, so events sent after this reach the socket)."""
    ws = await connect(
        f"{ws_url}?token={account.token}",
        max_size=None,
        max_queue=None,  # the reader task drains frames as they come; never stall the server
        compression="deflate" if compression else None,
        open_timeout=30,
        ping_interval=None,
    )
    hello = orjson.loads(await asyncio.wait_for(ws.recv(), timeout=30))
    if hello.get("type") != "hello":
        raise RuntimeError(f"expected hello, got {hello}")
    return ws


async def open_sockets(
    ws_url: str, accounts: Sequence[Account], *, compression: bool, concurrency: int = 32
) -> list[ClientConnection]:
    return await bounded(
        [lambda a=a: open_socket(ws_url, a, compression=compression) for a in accounts], concurrency
    )


def send_frame(conversation_id: str, frame_id: int, text: str, client_msg_id: str) -> str:
    return orjson.dumps(
        {
            "type": "send",
            "id": frame_id,
            "conversation_id": conversation_id,
            "text": text,
            "client_msg_id": client_msg_id,
        }
    ).decode()
