"""Every kind of event reaches the members' sockets; resume replays what a client missed."""

from __future__ import annotations

import asyncio
import base64
import os
import socket

import pytest

from services.realtime.hub import RealtimeHub
from tests.support.clients import WsClient
from tests.support.server import RunningServer, start_server
from tests.support.world import make_world


async def test_edit_delete_reaction_and_membership_events_arrive_in_order(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    await carol.post(f"/conversations/{world.channel_id}/leave", expect=204)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    msg = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "v1"}, expect=201)
    await alice.http.patch(f"/api/v1/messages/{msg['id']}", json={"text": "v2"})
    await bob.post(f"/messages/{msg['id']}/reactions", {"emoji": "tada"}, expect=204)
    await bob.http.delete(f"/api/v1/messages/{msg['id']}/reactions/tada")
    await carol.post(f"/conversations/{world.channel_id}/join", expect=200)
    await alice.http.delete(f"/api/v1/messages/{msg['id']}")
    expected = [
        "message.created",
        "message.edited",
        "reaction.added",
        "reaction.removed",
        "member.joined",
        "message.deleted",
    ]
    await b.wait_for(lambda f: f["type"] == "message.deleted")
    persisted = [f for f in b.frames if f.get("seq") is not None]
    assert [f["type"] for f in persisted] == expected
    seqs = [f["seq"] for f in persisted]
    assert seqs == list(range(seqs[0], seqs[0] + len(expected))), "the conversation's stream is gap-free"
    assert persisted[1]["data"]["message"]["text"] == "v2"
    assert persisted[4]["data"]["user_id"] == carol.id
    await b.close()
    await world.close()


async def test_a_new_member_starts_receiving_at_once_and_a_leaver_stops(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, _bob, carol = world.users
    c = await WsClient.connect(server.ws_url, carol.token)
    await c.wait_for(lambda f: f["type"] == "hello")
    room = await alice.post(f"/workspaces/{world.workspace_id}/channels", {"name": "new-room"}, expect=201)
    await carol.post(f"/conversations/{room['id']}/join", expect=200)
    await c.wait_for(lambda f: f["type"] == "member.joined" and f["conversation_id"] == room["id"])
    await alice.post(f"/conversations/{room['id']}/messages", {"text": "welcome"}, expect=201)
    await c.wait_for(lambda f: f["type"] == "message.created" and f["conversation_id"] == room["id"])
    await carol.post(f"/conversations/{room['id']}/leave", expect=204)
    await c.wait_for(lambda f: f["type"] == "member.left" and f["conversation_id"] == room["id"])
    await alice.post(f"/conversations/{room['id']}/messages", {"text": "after you left"}, expect=201)
    dm = await alice.post(f"/workspaces/{world.workspace_id}/dms", {"user_ids": [carol.id]}, expect=200)
    created = await c.wait_for(lambda f: f["type"] == "conversation.created")
    assert created["conversation_id"] == dm["id"]
    await alice.post(f"/conversations/{dm['id']}/messages", {"text": "psst"}, expect=201)
    await c.wait_for(lambda f: f["type"] == "message.created" and f["conversation_id"] == dm["id"])
    assert [m["data"]["message"]["text"] for m in c.messages_in(room["id"])] == ["welcome"]
    await c.close()
    await world.close()


async def test_typing_and_presence_reach_other_members(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    a = await WsClient.connect(server.ws_url, alice.token)
    online = await b.wait_for(lambda f: f["type"] == "presence" and f["data"]["user_id"] == alice.id)
    assert online["data"]["status"] == "online"
    await a.send({"type": "typing", "conversation_id": world.channel_id})
    typing = await b.wait_for(lambda f: f["type"] == "typing")
    assert typing["data"]["user_id"] == alice.id and typing["seq"] is None
    await a.send({"type": "presence", "status": "away"})
    await b.wait_for(lambda f: f["type"] == "presence" and f["data"]["status"] == "away")
    await a.close()
    await b.wait_for(lambda f: f["type"] == "presence" and f["data"]["status"] == "offline")
    await b.close()
    await world.close()


async def test_resume_replays_missed_events_in_order(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    b = await WsClient.connect(server.ws_url, bob.token)
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "seen"}, expect=201)
    seen = await b.wait_for(lambda f: f["type"] == "message.created")
    await b.close()
    for i in range(5):
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"missed {i}"}, expect=201)
    b2 = await WsClient.connect(server.ws_url, bob.token)
    await b2.wait_for(lambda f: f["type"] == "hello")
    await b2.send({"type": "resume", "cursors": {world.channel_id: seen["seq"]}})
    await b2.wait_for(lambda f: len(b2.messages_in(world.channel_id)) == 5)
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "live"}, expect=201)
    await b2.wait_for(lambda f: len(b2.messages_in(world.channel_id)) == 6)
    texts = [f["data"]["message"]["text"] for f in b2.messages_in(world.channel_id)]
    assert texts == [f"missed {i}" for i in range(5)] + ["live"]
    seqs = [f["seq"] for f in b2.frames if f.get("seq") is not None]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    await b2.close()
    await world.close()


async def test_resume_from_too_far_back_asks_for_resync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(tmp_path / "d", resume_max_events=3)
    try:
        world = await make_world(server.url)
        alice, bob = world.users
        for i in range(6):
            await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"m{i}"}, expect=201)
        b = await WsClient.connect(server.ws_url, bob.token)
        await b.wait_for(lambda f: f["type"] == "hello")
        await b.send({"type": "resume", "cursors": {world.channel_id: 1}})
        resync = await b.wait_for(lambda f: f["type"] == "resync")
        assert resync["conversation_id"] == world.channel_id
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "after"}, expect=201)
        await b.wait_for(lambda f: f["type"] == "message.created")
        assert [f["data"]["message"]["text"] for f in b.messages_in(world.channel_id)] == ["after"]
        await b.close()
        await world.close()
    finally:
        await server.stop()


async def test_a_client_that_stops_reading_is_closed_without_slowing_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(
        tmp_path / "d", send_queue_size=20, rate_limit_burst=10_000, rate_limit_per_second=10_000
    )
    try:
        world = await make_world(server.url, 3)
        alice, bob, carol = world.users
        stalled = await _never_reading_socket(server, carol.token)
        hub = server.app.state.hub
        fast = await WsClient.connect(server.ws_url, bob.token)
        await fast.wait_for(lambda f: f["type"] == "hello")
        assert hub.user_connection_count(int(carol.id)) == 1
        big = "x" * 30_000
        sender = await WsClient.connect(server.ws_url, alice.token)
        for i in range(400):
            await sender.send({"type": "send", "conversation_id": world.channel_id, "text": f"{i} {big}"})
        await fast.wait_for(lambda f: len(fast.messages_in(world.channel_id)) == 400, timeout=60)
        for _ in range(200):
            if hub.user_connection_count(int(carol.id)) == 0:
                break
            await asyncio.sleep(0.1)
        assert hub.user_connection_count(int(carol.id)) == 0, "the stalled client was not disconnected"
        seqs = [f["seq"] for f in fast.messages_in(world.channel_id)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 400, "the reading client got everything, in order"
        stalled.close()
        for c in (fast, sender):
            await c.close()
        await world.close()
    finally:
        await server.stop()


async def _never_reading_socket(server: RunningServer, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (tiny receive buffer)."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    sock.setblocking(False)
    for _ in range(100):
        if server.app.state.hub.connections:
            break
        await asyncio.sleep(0.05)
    return sock


async def test_cursors_in_the_auth_frame_replay_without_duplicates(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    first = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "seen"}, expect=201)
    for i in range(3):
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"missed {i}"}, expect=201)
    b = await WsClient.connect(server.ws_url)
    await b.send({"type": "auth", "token": bob.token, "cursors": {world.channel_id: first["seq"]}})
    await b.wait_for(lambda f: f["type"] == "hello")
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "live"}, expect=201)
    await b.wait_for(lambda f: len(b.messages_in(world.channel_id)) == 4)
    created = [f for f in b.frames if f["type"] == "message.created"]
    assert [f["data"]["message"]["text"] for f in created] == ["missed 0", "missed 1", "missed 2", "live"]
    await b.close()
    await world.close()


async def test_an_event_arriving_while_a_resuming_socket_subscribes_is_sent_once_in_order(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket resuming from a cursor behind the store: an event that arrives live while the
    node is still subscribing its channels (before the replay has started) must not be sent
    again by the replay. The interleaving is forced by holding the subscription until the live
    event has reached the node."""
    world = await make_world(server.url)
    alice, bob = world.users
    first = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "seen"}, expect=201)
    for i in range(3):
        last = await alice.post(
            f"/conversations/{world.channel_id}/messages", {"text": f"missed {i}"}, expect=201
        )
    hub: RealtimeHub = server.app.state.hub
    subscribe = hub._subscribe
    conversation_id = int(world.channel_id)
    armed = True

    async def subscribe_while_an_event_arrives(channels: list[str]) -> None:
        nonlocal armed
        await subscribe(channels)
        if not armed or f"conv:{conversation_id}" not in channels:
            return
        armed = False
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "during"}, expect=201)
        for _ in range(500):
            streams = [c.streams[conversation_id] for c in hub.connections if str(c.user.id) == bob.id]
            if streams and (streams[0].last_seq > last["seq"] or last["seq"] + 1 in streams[0].pending):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the live event never reached the node")

    monkeypatch.setattr(hub, "_subscribe", subscribe_while_an_event_arrives)
    b = await WsClient.connect(server.ws_url)
    await b.send({"type": "auth", "token": bob.token, "cursors": {world.channel_id: first["seq"]}})
    await b.wait_for(lambda f: f["type"] == "hello")
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "live"}, expect=201)
    await b.wait_for(
        lambda f: any(m["data"]["message"]["text"] == "live" for m in b.messages_in(world.channel_id))
    )
    await asyncio.sleep(0.3)  # a duplicate from the replay would have arrived by now
    created = [f for f in b.frames if f["type"] == "message.created"]
    assert [f["data"]["message"]["text"] for f in created] == [
        "missed 0",
        "missed 1",
        "missed 2",
        "during",
        "live",
    ]
    await b.close()
    await world.close()


async def test_after_a_resync_the_stream_carries_on_without_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(tmp_path / "d", resume_max_events=2)
    try:
        world = await make_world(server.url)
        alice, bob = world.users
        for i in range(5):
            await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"m{i}"}, expect=201)
        b = await WsClient.connect(server.ws_url)
        await b.send({"type": "auth", "token": bob.token, "cursors": {world.channel_id: 1}})
        await b.wait_for(lambda f: f["type"] == "resync")
        for i in range(2):
            await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"new{i}"}, expect=201)
        await b.wait_for(lambda f: len(b.messages_in(world.channel_id)) == 2)
        assert len(b.of_type("resync")) == 1
        await b.close()
        await world.close()
    finally:
        await server.stop()


async def test_read_markers_reach_the_readers_other_sockets(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    msg = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "read me"}, expect=201)
    phone = await WsClient.connect(server.ws_url, bob.token)
    laptop = await WsClient.connect(server.ws_url, bob.token)
    for s in (phone, laptop):
        await s.wait_for(lambda f: f["type"] == "hello")
    await laptop.send({"type": "mark_read", "id": 1, "conversation_id": world.channel_id, "seq": msg["seq"]})
    marker = await phone.wait_for(lambda f: f["type"] == "read_marker.updated")
    assert marker["data"]["last_read_seq"] == msg["seq"] and marker["conversation_id"] == world.channel_id
    for s in (phone, laptop):
        await s.close()
    await world.close()
