"""Setting up a scenario through Parley's public API: accounts, a workspace, a channel, sockets.

Set-up is not measured; it only has to be quick and bounded. Sign-ups hash a password
(argon2, ~0.2 s of CPU each), so they run a few at a time, not all at once.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import orjson

from bench.wire import Closed, WireSocket, connect

T = TypeVar("T")
PASSWORD = "bench-password-123"
SETUP_CONCURRENCY = 4
_accounts = itertools.count()
# Frames (by type) a socket received before its hello: a protocol-order finding, not fatal.
frames_before_hello: collections.Counter[str] = collections.Counter()


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


async def bounded(
    calls: Sequence[Callable[[], Awaitable[T]]], concurrency: int = SETUP_CONCURRENCY
) -> list[T]:
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


async def _post(http: httpx.AsyncClient, path: str, account: Account, body: Any = None) -> Any:
    return await _ok(http.post(path, json=body, headers=account.headers))


async def sign_up(http: httpx.AsyncClient, prefix: str) -> Account:
    username = f"{prefix}{next(_accounts)}"
    body = await _ok(http.post("/auth/signup", json={"username": username, "password": PASSWORD}))
    return Account(body["user"]["id"], username, body["token"])


async def sign_up_many(http: httpx.AsyncClient, prefix: str, count: int) -> list[Account]:
    return await bounded([partial(sign_up, http, prefix) for _ in range(count)])


async def create_room(http: httpx.AsyncClient, accounts: Sequence[Account], name: str = "bench") -> Room:
    """``accounts[0]`` creates a workspace and a public channel; the others join both."""
    owner, others = accounts[0], accounts[1:]
    workspace = await _ok(
        http.post("/workspaces", json={"name": f"{name} {owner.username}"}, headers=owner.headers)
    )
    invite = await _ok(http.post(f"/workspaces/{workspace['id']}/invites", headers=owner.headers))
    join_workspace = "/workspaces/join"
    await bounded(
        [partial(_post, http, join_workspace, a, {"code": invite["code"]}) for a in others], concurrency=16
    )
    channel = await _ok(
        http.post(
            f"/workspaces/{workspace['id']}/channels",
            json={"name": name, "private": False},
            headers=owner.headers,
        )
    )
    join_channel = f"/conversations/{channel['id']}/join"
    await bounded([partial(_post, http, join_channel, a) for a in others], concurrency=16)
    return Room(workspace["id"], channel["id"], owner, list(accounts))


async def open_socket(ws_url: str, account: Account, *, compression: bool) -> WireSocket:
    """An authenticated socket, after its ``hello`` frame (the server follows the account's
    conversations before saying hello, so events sent after this reach the socket)."""
    ws = await connect(f"{ws_url}?token={account.token}", compression=compression, timeout=30)
    # The protocol says hello comes first, but an event published while the server registers
    # the socket can overtake it (seen with Redis pub/sub): skip such frames, and count them.
    for _ in range(1000):
        frame = orjson.loads(await ws.recv(timeout=30))
        if frame.get("type") == "hello":
            return ws
        frames_before_hello[str(frame.get("type"))] += 1
    raise RuntimeError("no hello among the first 1000 frames")


async def open_sockets(
    ws_url: str, accounts: Sequence[Account], *, compression: bool, concurrency: int = 32
) -> list[WireSocket]:
    return await bounded(
        [partial(open_socket, ws_url, a, compression=compression) for a in accounts], concurrency
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


async def send_many(
    sockets: Sequence[WireSocket],
    conversation_id: str,
    texts: Sequence[str],
    *,
    tag: str,
    window: int = 8,
    sent_at: dict[str, int] | None = None,
) -> int:
    """Send ``texts`` into a conversation over ``sockets`` (one account's or several), keeping
    ``window`` sends in flight per socket; returns the ``perf_counter_ns`` of the last ack.
    ``tag`` makes the ``client_msg_id`` of this call's sends unique (``<tag>.<n>``); when
    ``sent_at`` is given, it gets each ``client_msg_id``'s send time (``perf_counter_ns``).
    Any error frame fails the call: seeding must store every message."""
    work = iter(enumerate(texts))
    last_ack = 0

    async def pump(ws: WireSocket) -> None:
        nonlocal last_ack
        in_flight: dict[int, asyncio.Future[None]] = {}
        slots = asyncio.Semaphore(window)

        def on_text(raw: str, now: int) -> None:
            nonlocal last_ack
            if '"type":"ack"' in raw[:16] or '"type":"error"' in raw[:16]:
                frame = orjson.loads(raw)
                future = in_flight.pop(frame.get("id"), None)
                if future is None:
                    return
                if frame["type"] == "error":
                    future.set_exception(RuntimeError(f"send refused: {frame}"))
                else:
                    future.set_result(None)
                    last_ack = max(last_ack, now)

        ws.set_handler(on_text)
        try:
            waiting: list[asyncio.Future[None]] = []
            for n, text in work:
                await slots.acquire()
                future = asyncio.get_running_loop().create_future()
                future.add_done_callback(lambda _: slots.release())
                in_flight[n] = future
                waiting.append(future)
                client_msg_id = f"{tag}.{n}"
                if sent_at is not None:
                    sent_at[client_msg_id] = time.perf_counter_ns()
                await ws.send(send_frame(conversation_id, n, text, client_msg_id))
            # A socket that closed fails the call instead of leaving it waiting.
            everything: asyncio.Future[list[None]] = asyncio.gather(*waiting)
            watched: set[asyncio.Future[Any]] = {everything, ws.closed}
            done, _ = await asyncio.wait(watched, timeout=120, return_when=asyncio.FIRST_COMPLETED)
            if everything not in done:
                everything.cancel()
                raise RuntimeError(f"{len(in_flight)} sends unanswered (socket closed: {ws.closed.done()})")
            everything.result()
        except Closed as exc:
            raise RuntimeError(f"socket closed while sending: {exc}") from exc

    await asyncio.gather(*(pump(ws) for ws in sockets))
    return last_ack
