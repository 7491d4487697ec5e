"""Hostile or broken frames get an error frame or a close code; other clients are unaffected."""

from __future__ import annotations

import asyncio
import json

from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_bad_frames_get_error_frames_and_the_socket_stays_usable(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    a = await WsClient.connect(server.ws_url, alice.token)
    await a.wait_for(lambda f: f["type"] == "hello")
    cases = [
        ("{not json", "invalid_json"),
        (json.dumps([1, 2]), "unknown_type"),
        (json.dumps({"type": "launch_missiles"}), "unknown_type"),
        (json.dumps({"type": "send", "id": "x1"}), "invalid_frame"),
        (
            json.dumps({"type": "send", "id": "x2", "conversation_id": world.channel_id, "text": ""}),
            "no_text",
        ),
        (
            json.dumps(
                {"type": "send", "id": "x3", "conversation_id": world.channel_id, "text": "y" * 40_001}
            ),
            "msg_too_long",
        ),
        (
            json.dumps({"type": "send", "id": "x4", "conversation_id": "999", "text": "hi"}),
            "channel_not_found",
        ),
        (
            json.dumps({"type": "send", "id": "x5", "conversation_id": {"$gt": ""}, "text": "hi"}),
            "invalid_frame",
        ),
        (
            json.dumps({"type": "mark_read", "id": "x6", "conversation_id": world.channel_id, "seq": 10**9}),
            "invalid_seq",
        ),
    ]
    for raw, code in cases:
        errors_before = len(a.of_type("error"))
        await a.ws.send(raw)
        await a.wait_for(lambda _, n=errors_before: len(a.of_type("error")) > n)
        frame = a.of_type("error")[-1]
        assert frame["code"] == code, (raw[:60], frame)
    await a.send({"type": "ping", "id": "p"})
    await a.wait_for(lambda f: f["type"] == "pong" and f["id"] == "p")
    history = await alice.get(f"/conversations/{world.channel_id}/messages")
    assert history["messages"] == [], "nothing was stored"
    await a.close()
    await world.close()


async def test_binary_frame_closes_with_1008_and_oversized_frame_with_1009(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")

    binary = await WsClient.connect(server.ws_url, alice.token)
    await binary.wait_for(lambda f: f["type"] == "hello")
    await binary.ws.send(b"\x00\x01")
    assert (await binary.wait_closed())[0] == 1008

    big = await WsClient.connect(server.ws_url, alice.token)
    await big.wait_for(lambda f: f["type"] == "hello")
    await big.ws.send(
        json.dumps({"type": "send", "conversation_id": world.channel_id, "text": "z" * 300_000})
    )
    assert (await big.wait_closed())[0] == 1009

    # The well-behaved client did not notice.
    await b.send({"type": "send", "id": 1, "conversation_id": world.channel_id, "text": "still here"})
    await b.wait_for(lambda f: f["type"] == "ack" and f["id"] == 1)
    assert b.closed is None
    await b.close()
    await world.close()


async def test_unauthenticated_sockets_are_closed_with_1008(server: RunningServer) -> None:
    for token in ("forged", ""):
        ws = await WsClient.connect(server.ws_url, token or None)
        if not token:
            await ws.send({"type": "send", "conversation_id": "1", "text": "hi"})
        code, _ = await ws.wait_closed()
        assert code == 1008
        assert ws.of_type("error")[0]["code"] == "unauthenticated"


async def test_auth_frame_works_instead_of_query_token(server: RunningServer) -> None:
    world = await make_world(server.url)
    ws = await WsClient.connect(server.ws_url)
    await ws.send({"type": "auth", "token": world.users[0].token})
    hello = await ws.wait_for(lambda f: f["type"] == "hello")
    assert hello["user"]["id"] == world.users[0].id
    assert [c["conversation"]["id"] for c in hello["conversations"]] == [world.channel_id]
    await ws.close()
    await world.close()


async def test_non_member_gets_no_events_and_cannot_send(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    await carol.post(f"/conversations/{world.channel_id}/leave", expect=204)
    c = await WsClient.connect(server.ws_url, carol.token)
    await c.wait_for(lambda f: f["type"] == "hello")
    await c.send({"type": "send", "id": 9, "conversation_id": world.channel_id, "text": "let me in"})
    err = await c.wait_for(lambda f: f["type"] == "error" and f.get("id") == 9)
    assert err["code"] == "not_in_channel"
    await c.send({"type": "resume", "cursors": {world.channel_id: 0}})
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "members only"}, expect=201)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.send({"type": "resume", "cursors": {world.channel_id: 0}})
    await b.wait_for(lambda f: f["type"] == "message.created")
    await asyncio.sleep(0.3)
    assert c.of_type("message.created") == []
    for client in (b, c):
        await client.close()
    await world.close()


async def test_too_many_sockets_per_user_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.server import start_server

    server = await start_server(tmp_path / "d", max_connections_per_user=2)
    try:
        world = await make_world(server.url)
        socks = [await WsClient.connect(server.ws_url, world.users[0].token) for _ in range(2)]
        for s in socks:
            await s.wait_for(lambda f: f["type"] == "hello")
        third = await WsClient.connect(server.ws_url, world.users[0].token)
        assert (await third.wait_closed())[0] == 1013
        for s in socks:
            await s.close()
        await world.close()
    finally:
        await server.stop()
