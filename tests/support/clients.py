"""Test clients: a REST client bound to one user, and a WebSocket client that collects
events and acks the way a real client would (dedupe by message id, order by seq)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import websockets

_names = itertools.count()


class ApiUser:
    def __init__(self, base_url: str, username: str, token: str, user: dict[str, Any]) -> None:
        self.base_url = base_url
        self.username = username
        self.token = token
        self.user = user
        self.id: str = user["id"]
        self.http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    @classmethod
    async def signup(cls, base_url: str, username: str | None = None) -> ApiUser:
        username = username or f"user{next(_names)}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            r = await http.post(
                "/api/v1/auth/signup", json={"username": username, "password": "correct horse"}
            )
            r.raise_for_status()
            body = r.json()
        return cls(base_url, username, body["token"], body["user"])

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, json_body: Any = None, expect: int | None = None) -> Any:
        r = await self.http.post(f"/api/v1{path}", json=json_body)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json() if r.content else None

    async def get(self, path: str, params: dict[str, Any] | None = None, expect: int | None = 200) -> Any:
        r = await self.http.get(f"/api/v1{path}", params=params)
        if expect is not None:
            assert r.status_code == expect, r.text
        return r.json()


class WsClient:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._new = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.closed: tuple[int | None, str | None] | None = None

    @classmethod
    async def connect(cls, ws_url: str, token: str | None = None, **kwargs: Any) -> WsClient:
        url = f"{ws_url}?token={token}" if token else ws_url
        ws = await websockets.connect(url, max_size=None, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                async with self._new:
                    self.frames.append(json.loads(raw))
                    self._new.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code, self.ws.close_reason)
            async with self._new:
                self._new.notify_all()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            async with self._new:
                while True:
                    for frame in self.frames:
                        if predicate(frame):
                            return frame
                    if self.closed is not None:
                        raise AssertionError(f"socket closed {self.closed}; frames: {self.frames[-5:]}")
                    await self._new.wait()

        return await asyncio.wait_for(_wait(), timeout)

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        async def _wait() -> tuple[int | None, str | None]:
            async with self._new:
                while self.closed is None:
                    await self._new.wait()
                return self.closed

        return await asyncio.wait_for(_wait(), timeout)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == type_]

    def messages_in(self, conversation_id: str) -> list[dict[str, Any]]:
        """message.created events of a conversation, deduped by message id, as a client shows them."""
        seen: dict[str, dict[str, Any]] = {}
        for f in self.frames:
            if f.get("type") == "message.created" and f.get("conversation_id") == conversation_id:
                seen.setdefault(f["data"]["message"]["id"], f)
        return list(seen.values())

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
