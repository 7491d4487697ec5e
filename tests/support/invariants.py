"""The delivery invariant checker, and a client that behaves like a careful real one.

``ResilientClient`` reconnects with backoff, resumes with per-conversation cursors in its auth
frame, resends unacknowledged sends with their original ``client_msg_id``, and records every
persisted event it receives, raw, in arrival order.

``check_invariants`` then asserts, for a run: every acknowledged message is stored exactly once;
every member's client received it exactly once, per conversation in strictly increasing ``seq``;
it is searchable; and no client received an event of a conversation its user is not in.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import websockets

from tests.support.clients import ApiUser


@dataclass
class ResilientClient:
    ws_url: str
    user: ApiUser
    cursors: dict[str, int] = field(default_factory=dict)
    received: dict[str, list[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(list))
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconnects: int = 0
    resyncs: int = 0
    _ws: Any = None
    _stop: bool = False
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def wait_connected(self, timeout: float = 15) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        self._stop = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def send(self, conversation_id: str, text: str) -> str:
        client_msg_id = uuid.uuid4().hex
        frame = {
            "type": "send",
            "id": client_msg_id,
            "conversation_id": conversation_id,
            "text": text,
            "client_msg_id": client_msg_id,
        }
        self.pending[client_msg_id] = frame
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send(json.dumps(frame))
        return client_msg_id

    async def _run(self) -> None:
        delay = 0.2
        while not self._stop:
            try:
                async with websockets.connect(self.ws_url, max_size=None, open_timeout=5) as ws:
                    await ws.send(
                        json.dumps({"type": "auth", "token": self.user.token, "cursors": self.cursors})
                    )
                    await self._session(ws)
                    delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            self._ws = None
            self._ready.clear()
            if not self._stop:
                self.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)

    async def _session(self, ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "hello":
                for c in frame["conversations"]:
                    self.cursors.setdefault(c["conversation"]["id"], c["conversation"]["last_seq"])
                self._ws = ws
                self._ready.set()
                for pending in list(self.pending.values()):  # resend what was never acknowledged
                    await ws.send(json.dumps(pending))
            elif kind == "ack" and frame.get("message"):
                self.acked[frame["client_msg_id"]] = frame["message"]
                self.pending.pop(frame["client_msg_id"], None)
            elif kind == "error" and frame.get("code") in ("store_unavailable", "rate_limited", "internal"):
                pass  # stays pending: resent on the next connection (same client_msg_id)
            elif kind == "resync":
                self.resyncs += 1
            elif frame.get("seq") is not None:
                conversation = frame["conversation_id"]
                message_id = frame["data"].get("message", {}).get("id", "")
                self.received[conversation].append((frame["seq"], kind, message_id))
                self.cursors[conversation] = max(self.cursors.get(conversation, 0), frame["seq"])

    async def resend_pending(self) -> None:
        if self._ws is not None:
            for pending in list(self.pending.values()):
                with contextlib.suppress(Exception):
                    await self._ws.send(json.dumps(pending))


@dataclass
class Report:
    acked: int
    stored: int
    deliveries_expected: int
    deliveries_seen: int
    lost: int
    duplicates: int
    out_of_order: int
    leaked: int
    unsearchable: int
    reconnects: int


async def check_invariants(
    clients: list[ResilientClient],
    members: dict[str, set[str]],
    reader: ApiUser,
    *,
    search_token: str,
) -> Report:
    """``members``: conversation id → user ids. ``reader`` must be a member of every conversation."""
    acked: dict[str, dict[str, Any]] = {}
    for c in clients:
        for message in c.acked.values():
            acked[message["id"]] = message
    stored_ids: list[str] = []
    for conversation in members:
        before = None
        while True:
            params = {"limit": 200} | ({"before": before} if before else {})
            page = await reader.get(f"/conversations/{conversation}/messages", params)
            stored_ids += [m["id"] for m in page["messages"]]
            if not page["has_more"]:
                break
            before = page["messages"][-1]["seq"]
    stored_counts: dict[str, int] = defaultdict(int)
    for message_id in stored_ids:
        stored_counts[message_id] += 1

    lost = duplicates = out_of_order = leaked = seen = expected = 0
    for c in clients:
        for conversation, events in c.received.items():
            if c.user.id not in members.get(conversation, set()):
                leaked += len(events)
                continue
            seqs = [seq for seq, _, _ in events]
            out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
            ids = [mid for _, kind, mid in events if kind == "message.created"]
            duplicates += len(ids) - len(set(ids))
        for message in acked.values():
            if c.user.id in members[message["conversation_id"]]:
                expected += 1
                got = any(
                    mid == message["id"] for _, kind, mid in c.received.get(message["conversation_id"], [])
                )
                seen += got
                lost += not got
    stored_once = sum(1 for mid in acked if stored_counts.get(mid) == 1)
    unsearchable = 0
    for conversation in members:
        in_conversation = sum(1 for m in acked.values() if m["conversation_id"] == conversation)
        result = await reader.get("/search", {"q": search_token, "conversation_id": conversation, "limit": 1})
        unsearchable += max(0, in_conversation - result["total"])
    return Report(
        acked=len(acked),
        stored=stored_once,
        deliveries_expected=expected,
        deliveries_seen=seen,
        lost=lost + (len(acked) - stored_once),
        duplicates=duplicates + sum(1 for mid in acked if stored_counts.get(mid, 0) > 1),
        out_of_order=out_of_order,
        leaked=leaked,
        unsearchable=unsearchable,
        reconnects=sum(c.reconnects for c in clients),
    )
