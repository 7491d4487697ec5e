"""The realtime node's catch-up sweep delivers an event that pub/sub lost at the tail of a
conversation.

Pub/sub is at-most-once. A lost event is normally noticed when the next one of its conversation
arrives (its seq skips one) and filled from the store; the last event of a conversation has no
next one. The sweep (``RealtimeHub._sweep``, every ``SWEEP_INTERVAL`` seconds) compares each
followed conversation's stored ``last_seq`` with what every socket was sent and fills the ones
still behind.

The fault is injected at the node, the engines stay real: the live delivery of one event to one
socket is dropped, as if that node's pub/sub message had not arrived for it. A second socket on
the same node gets the event live and must not get it again from the sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from services.realtime import hub as realtime_hub
from services.realtime.connection import ClientConnection
from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.world import make_world

CAUGHT_UP_WITHIN = 10.0  # seconds; the sweep needs at most two intervals (2 × 2 s) and a fill


def socket_of(server: RunningServer, user_id: str) -> ClientConnection:
    """The node's connection object of that user's (only) socket."""
    hub: realtime_hub.RealtimeHub = server.app.state.hub
    (conn,) = [c for c in hub.connections if str(c.user.id) == user_id]
    return conn


def lose_live_delivery_once(
    monkeypatch: pytest.MonkeyPatch, conn: ClientConnection, conversation_id: str, event_type: str
) -> asyncio.Event:
    """Drop the first live ``event_type`` event of the conversation on its way to ``conn``;
    the returned event is set once it was dropped (so the test knows the fault happened)."""
    dropped = asyncio.Event()
    offer: Callable[[int, int, str], None] = conn.offer

    def lossy_offer(conversation: int, seq: int, text: str) -> None:
        event: dict[str, Any] = orjson.loads(text)
        if not dropped.is_set() and str(conversation) == conversation_id and event["type"] == event_type:
            dropped.set()
            return
        offer(conversation, seq, text)

    monkeypatch.setattr(conn, "offer", lossy_offer)
    return dropped


def persisted_in(client: WsClient, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's events with a seq, as the client received them (duplicates kept)."""
    return [f for f in client.frames if f.get("conversation_id") == conversation_id and f.get("seq")]


async def test_an_event_lost_at_the_tail_of_a_conversation_still_reaches_the_socket_once(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    b = await WsClient.connect(server.ws_url, bob.token)
    c = await WsClient.connect(server.ws_url, carol.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    await c.wait_for(lambda f: f["type"] == "hello")
    # A first message flows normally (and shows the pipeline is up in both modes).
    first = await alice.post(f"/conversations/{channel}/messages", {"text": "before"}, expect=201)
    for client in (b, c):
        await client.wait_for(lambda f: f.get("seq") == first["seq"] and f.get("conversation_id") == channel)

    dropped = lose_live_delivery_once(monkeypatch, socket_of(server, bob.id), channel, "message.created")
    tail = await alice.post(f"/conversations/{channel}/messages", {"text": "the tail"}, expect=201)
    await c.wait_for(lambda f: f.get("seq") == tail["seq"] and f.get("conversation_id") == channel)
    assert dropped.is_set(), "the fault was injected: bob's socket did not get the tail live"

    # Nothing follows the tail in this conversation: only the sweep can deliver it to bob.
    filled = await b.wait_for(
        lambda f: f.get("seq") == tail["seq"] and f.get("conversation_id") == channel,
        timeout=CAUGHT_UP_WITHIN,
    )
    assert filled["type"] == "message.created"
    assert filled["data"]["message"]["id"] == tail["id"]

    # Two more sweeps: neither socket may be sent the tail (or anything) a second time.
    await asyncio.sleep(2 * realtime_hub.SWEEP_INTERVAL + 0.5)
    for client in (b, c):
        assert [f["seq"] for f in persisted_in(client, channel)] == [first["seq"], tail["seq"]]
        assert [m["data"]["message"]["id"] for m in client.of_type("message.created")] == [
            first["id"],
            tail["id"],
        ]
        assert client.of_type("resync") == []
    await b.close()
    await c.close()
    await world.close()
