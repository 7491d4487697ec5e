"""Two real WebSocket clients against a real server: what users of a chat see."""

from __future__ import annotations

from tests.support.clients import WsClient
from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_b_receives_message_sent_by_a_and_a_gets_ack_with_stored_message(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    a = await WsClient.connect(server.ws_url, alice.token)
    b = await WsClient.connect(server.ws_url, bob.token)
    await a.wait_for(lambda f: f["type"] == "hello")
    await b.wait_for(lambda f: f["type"] == "hello")

    await a.send(
        {
            "type": "send",
            "id": 1,
            "conversation_id": world.channel_id,
            "text": "hi bob",
            "client_msg_id": "c-1",
        }
    )
    ack = await a.wait_for(lambda f: f["type"] == "ack" and f.get("id") == 1)
    event = await b.wait_for(lambda f: f["type"] == "message.created")

    assert ack["duplicate"] is False
    assert ack["message"]["text"] == "hi bob"
    assert ack["message"]["seq"] > 0
    assert event["data"]["message"]["id"] == ack["message"]["id"]
    assert event["seq"] == ack["message"]["seq"]
    await a.close()
    await b.close()
    await world.close()


async def test_messages_arrive_in_seq_order_exactly_once(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    senders = [await WsClient.connect(server.ws_url, u.token) for u in (alice, bob)]
    listener = await WsClient.connect(server.ws_url, carol.token)
    await listener.wait_for(lambda f: f["type"] == "hello")
    for n in range(30):
        sender = senders[n % 2]
        await sender.send(
            {"type": "send", "conversation_id": world.channel_id, "text": f"m{n}", "client_msg_id": f"k{n}"}
        )
    await listener.wait_for(lambda f: len(listener.messages_in(world.channel_id)) == 30, timeout=10)

    created = [f for f in listener.frames if f["type"] == "message.created"]
    seqs = [f["seq"] for f in created]
    assert seqs == sorted(seqs), "events of one conversation arrive in seq order"
    assert len(seqs) == len(set(seqs)) == 30, "each message arrives once"
    for c in (*senders, listener):
        await c.close()
    await world.close()


async def test_retry_with_same_client_msg_id_returns_the_same_message(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    a = await WsClient.connect(server.ws_url, alice.token)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    frame = {"type": "send", "conversation_id": world.channel_id, "text": "once", "client_msg_id": "retry-1"}
    await a.send({**frame, "id": "first"})
    await a.send({**frame, "id": "second"})
    first = await a.wait_for(lambda f: f.get("id") == "first")
    second = await a.wait_for(lambda f: f.get("id") == "second")
    rest = await alice.post(
        f"/conversations/{world.channel_id}/messages", {"text": "once", "client_msg_id": "retry-1"}
    )

    assert first["message"]["id"] == second["message"]["id"] == rest["id"]
    assert [first["duplicate"], second["duplicate"]].count(False) == 1
    history = await bob.get(f"/conversations/{world.channel_id}/messages")
    assert [m["text"] for m in history["messages"]].count("once") == 1
    await b.wait_for(lambda f: f["type"] == "message.created")
    assert len(b.messages_in(world.channel_id)) == 1
    await a.close()
    await b.close()
    await world.close()
