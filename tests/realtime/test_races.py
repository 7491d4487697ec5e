"""Interleavings in the realtime delivery path: membership changes while a socket registers, gap
fills in flight across resume, leave and rejoin, and the shutdown drain with stalled sockets.

Each test forces its interleaving (an action run inside the registration, a held or slowed store
read, one live event lost for one socket) and checks what the client sees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from parley.adapters.store.sql import SqlSession
from parley.domain.actions import messages as messages_actions
from services.realtime.app import drain
from services.realtime.connection import ClientConnection, Gap
from services.realtime.hub import RealtimeHub
from tests.realtime.test_events import _never_reading_socket
from tests.support.clients import ApiUser, WsClient
from tests.support.server import RunningServer, start_server
from tests.support.world import World, make_world


def _hub(server: RunningServer) -> RealtimeHub:
    hub: RealtimeHub = server.app.state.hub
    return hub


def _conn_of(server: RunningServer, user_id: str) -> ClientConnection:
    (conn,) = [c for c in _hub(server).connections if str(c.user.id) == user_id]
    return conn


async def _connected(server: RunningServer, *users: ApiUser) -> list[WsClient]:
    """A socket per user, each past its hello."""
    sockets = [await WsClient.connect(server.ws_url, user.token) for user in users]
    for socket in sockets:
        await socket.wait_for(lambda f: f["type"] == "hello")
    return sockets


def _before_first_subscribe(
    monkeypatch: pytest.MonkeyPatch, hub: RealtimeHub, action: Callable[[], Awaitable[None]]
) -> None:
    """Run ``action`` once, inside the next registration, after its membership read and before
    its channels are subscribed (the window of an await on the store / on Redis)."""
    subscribe = hub._subscribe
    armed = True

    async def subscribe_after(channels: list[str]) -> None:
        nonlocal armed
        if armed:
            armed = False
            await action()
        await subscribe(channels)

    monkeypatch.setattr(hub, "_subscribe", subscribe_after)


def _lose_next_live(
    monkeypatch: pytest.MonkeyPatch, conn: ClientConnection, conversation_id: str
) -> asyncio.Event:
    """Drop the next live message.created of the conversation on its way to ``conn``: a new one,
    not a late copy of one sent already (on a loaded box the events of messages posted before the
    socket registered can still be on their way through the relay, Kafka and the fanout)."""
    dropped = asyncio.Event()
    offer = conn.offer

    def lossy(conversation: int, seq: int, text: str) -> None:
        stream = conn.streams.get(conversation)
        new = stream is not None and seq > stream.last_seq
        mine = not dropped.is_set() and str(conversation) == conversation_id and new
        if mine and orjson.loads(text)["type"] == "message.created":
            dropped.set()
            return
        offer(conversation, seq, text)

    monkeypatch.setattr(conn, "offer", lossy)
    return dropped


# -- a leave while the user's socket registers -----------------------------------------------------
async def test_a_user_leaving_while_their_socket_registers_gets_nothing_more_of_it(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    (c,) = await _connected(server, carol)  # a member watching the channel

    async def bob_leaves() -> None:
        await bob.post(f"/conversations/{channel}/leave", expect=204)
        await c.wait_for(lambda f: f["type"] == "member.left" and f["data"]["user_id"] == bob.id, timeout=5)

    _before_first_subscribe(monkeypatch, _hub(server), bob_leaves)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    await alice.post(f"/conversations/{channel}/messages", {"text": "after bob left"}, expect=201)
    await c.wait_for(lambda f: f["type"] == "message.created")
    await asyncio.sleep(0.5)
    leaked = [f["data"]["message"]["text"] for f in b.frames if f["type"] == "message.created"]
    assert leaked == [], f"bob is not a member of {channel} but received {leaked}"
    await b.close()
    await c.close()
    await world.close()


# -- a join while the user's socket registers ------------------------------------------------------
async def test_a_user_joining_while_their_socket_registers_receives_the_conversation(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 2)
    alice, bob = world.users
    a = await WsClient.connect(server.ws_url, alice.token)
    await a.wait_for(lambda f: f["type"] == "hello")
    room = await alice.post(f"/workspaces/{world.workspace_id}/channels", {"name": "room"}, expect=201)
    await a.wait_for(lambda f: f["type"] == "conversation.created" and f["conversation_id"] == room["id"])

    async def bob_joins() -> None:
        await bob.post(f"/conversations/{room['id']}/join", expect=200)
        await a.wait_for(
            lambda f: f["type"] == "member.joined" and f["conversation_id"] == room["id"], timeout=5
        )

    _before_first_subscribe(monkeypatch, _hub(server), bob_joins)
    b = await WsClient.connect(server.ws_url, bob.token)
    hello = await b.wait_for(lambda f: f["type"] == "hello")
    await alice.post(f"/conversations/{room['id']}/messages", {"text": "welcome bob"}, expect=201)
    # Long enough for a live event, a gap fill and two catch-up sweeps.
    await asyncio.sleep(5)
    in_hello = [x["conversation"]["id"] for x in hello["conversations"]]
    got = [m["data"]["message"]["text"] for m in b.messages_in(room["id"])]
    joined = [f for f in b.frames if f["type"] == "member.joined" and f["conversation_id"] == room["id"]]
    assert room["id"] in in_hello or joined, "bob's socket was never told about the room"
    assert got == ["welcome bob"], f"bob is a member of the room but his socket got {got}"
    await b.close()
    await a.close()
    await world.close()


# -- a resume while a gap fill is in flight --------------------------------------------------------
@pytest.mark.parametrize("first_fill", ["slow", "fails"])
async def test_resume_right_after_hello_replays_even_while_a_gap_fill_is_running(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, first_fill: str
) -> None:
    world = await make_world(server.url, 2)
    alice, bob = world.users
    channel = world.channel_id
    conversation_id = int(channel)
    hub = _hub(server)
    seen = await alice.post(f"/conversations/{channel}/messages", {"text": "seen"}, expect=201)
    for i in range(3):
        await alice.post(f"/conversations/{channel}/messages", {"text": f"missed {i}"}, expect=201)

    fill_gap = hub.fill_gap
    calls = 0
    in_flight, resumed = asyncio.Event(), asyncio.Event()

    async def slow_fill_gap(user: Any, conversation: int, after_seq: int) -> Gap:
        nonlocal calls
        calls += 1
        if calls == 1:
            in_flight.set()
            await resumed.wait()  # a store read under load: still in flight when the resume comes
            if first_fill == "fails":
                raise RuntimeError("the store read failed")  # the resume is still owed
        return await fill_gap(user, conversation, after_seq)

    monkeypatch.setattr(hub, "fill_gap", slow_fill_gap)

    b = await WsClient.connect(server.ws_url, bob.token)  # query token: no cursors in auth
    await b.wait_for(lambda f: f["type"] == "hello")
    # Right after hello (before the client's resume frame arrives) pub/sub loses one event for
    # this socket; the next one reveals the gap and a fill starts.
    dropped = _lose_next_live(monkeypatch, _conn_of(server, bob.id), channel)
    await alice.post(f"/conversations/{channel}/messages", {"text": "lost"}, expect=201)
    await alice.post(f"/conversations/{channel}/messages", {"text": "live"}, expect=201)
    await asyncio.wait_for(in_flight.wait(), 10)
    assert dropped.is_set() and _conn_of(server, bob.id).streams[conversation_id].filling
    await b.send({"type": "resume", "id": "r", "cursors": {channel: seen["seq"]}})
    await b.wait_for(lambda f: f["type"] == "ack" and f.get("id") == "r")
    resumed.set()
    await b.wait_for(lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "live")
    await asyncio.sleep(0.5)
    texts = [f["data"]["message"]["text"] for f in b.frames if f["type"] == "message.created"]
    assert texts == ["missed 0", "missed 1", "missed 2", "lost", "live"], texts
    await b.close()
    await world.close()


@dataclass
class GapInFlight:
    """Bob's socket filling a gap in #general (one live event lost for it), its store read held
    until ``gate`` is set; carol's socket watching the same channel."""

    world: World
    b: WsClient
    c: WsClient
    gate: asyncio.Event

    async def close(self) -> None:
        await self.b.close()
        await self.c.close()
        await self.world.close()


async def _gap_in_flight(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> GapInFlight:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    hub = _hub(server)
    gate = asyncio.Event()
    fill_gap = hub.fill_gap

    async def held_fill_gap(user: Any, conversation: int, after_seq: int) -> Gap:
        await gate.wait()  # a slow store read (or a fill still retrying)
        return await fill_gap(user, conversation, after_seq)

    monkeypatch.setattr(hub, "fill_gap", held_fill_gap)
    b, c = await _connected(server, bob, carol)
    dropped = _lose_next_live(monkeypatch, _conn_of(server, bob.id), channel)
    await alice.post(f"/conversations/{channel}/messages", {"text": "lost for bob"}, expect=201)
    await alice.post(f"/conversations/{channel}/messages", {"text": "reveals the gap"}, expect=201)
    await c.wait_for(
        lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "reveals the gap"
    )
    assert dropped.is_set()
    assert _conn_of(server, bob.id).streams[int(channel)].filling
    return GapInFlight(world, b, c, gate)


# -- a gap fill outliving a leave and a rejoin -----------------------------------------------------
async def test_a_fill_in_flight_across_leave_and_rejoin_keeps_the_stream_in_order_and_once(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await _gap_in_flight(server, monkeypatch)
    alice, bob, _ = setup.world.users
    channel, b = setup.world.channel_id, setup.b

    await bob.post(f"/conversations/{channel}/leave", expect=204)
    await alice.post(f"/conversations/{channel}/messages", {"text": "while bob is away"}, expect=201)
    await bob.post(f"/conversations/{channel}/join", expect=200)
    await b.wait_for(lambda f: f["type"] == "member.joined" and f["data"]["user_id"] == bob.id)
    setup.gate.set()
    await alice.post(f"/conversations/{channel}/messages", {"text": "back"}, expect=201)
    await b.wait_for(lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "back")
    await asyncio.sleep(0.5)
    seqs = [f["seq"] for f in b.frames if f.get("conversation_id") == channel and f.get("seq")]
    # (Events from while bob was away are readable to him again once he rejoined: REST history
    # shows them to members. What must hold is the order and "once" of his socket's stream.)
    assert seqs == sorted(set(seqs)), f"not strictly increasing: {seqs}"
    await setup.close()


# -- a leave while the user's only socket on the node registers ------------------------------------
async def test_a_user_leaving_while_their_only_socket_registers_gets_no_resync_and_nothing_more(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 2)
    alice, bob = world.users
    channel = world.channel_id
    probe = server.app.state.deps.pubsub.subscription()  # sees what the node would have seen
    await probe.subscribe(f"user:{bob.id}")

    async def bob_leaves() -> None:
        await bob.post(f"/conversations/{channel}/leave", expect=204)
        async for _, payload in probe.messages():  # the fanout published bob's member.left
            if orjson.loads(payload)["type"] == "member.left":
                return

    _before_first_subscribe(monkeypatch, _hub(server), bob_leaves)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    await alice.post(f"/conversations/{channel}/messages", {"text": "after bob left 1"}, expect=201)
    await asyncio.sleep(3)  # the fill's 40 attempts of 50 ms
    await alice.post(f"/conversations/{channel}/messages", {"text": "after bob left 2"}, expect=201)
    await asyncio.sleep(0.5)
    leaked = [f["data"]["message"]["text"] for f in b.frames if f["type"] == "message.created"]
    assert b.of_type("resync") == [] and leaked == [], (b.of_type("resync"), leaked)
    await probe.close()
    await b.close()
    await world.close()


# -- a leave while a gap fill is in flight ---------------------------------------------------------
async def test_a_leave_during_a_gap_fill_still_reaches_the_leaver_in_order(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await _gap_in_flight(server, monkeypatch)
    _, bob, _ = setup.world.users
    channel, b = setup.world.channel_id, setup.b

    await bob.post(f"/conversations/{channel}/leave", expect=204)  # from bob's other device
    await setup.c.wait_for(lambda f: f["type"] == "member.left")
    setup.gate.set()
    await asyncio.sleep(3)  # the fill's 40 attempts of 50 ms
    mine = [f for f in b.frames if f.get("conversation_id") == channel]
    seqs = [f["seq"] for f in mine if f.get("seq")]
    assert [f["type"] for f in mine if f["type"] in ("resync", "member.left")] == ["member.left"], [
        (f["type"], f.get("seq")) for f in mine
    ]
    assert seqs == sorted(set(seqs)), seqs
    await setup.close()


# -- graceful shutdown with stalled sockets --------------------------------------------------------
async def test_shutdown_drain_reaches_a_healthy_client_promptly_despite_stalled_ones(tmp_path: Path) -> None:

    server = await start_server(tmp_path / "d", rate_limit_burst=10_000, rate_limit_per_second=10_000)
    try:
        world = await make_world(server.url, 3)
        alice, bob, carol = world.users
        hub = _hub(server)
        stalled = []
        for _ in range(5):
            stalled.append(await _never_reading_socket(server, carol.token))
            for _ in range(100):
                if hub.user_connection_count(int(carol.id)) == len(stalled):
                    break
                await asyncio.sleep(0.02)
        healthy = await WsClient.connect(server.ws_url, bob.token)
        await healthy.wait_for(lambda f: f["type"] == "hello")
        big = "x" * 30_000
        sender = await WsClient.connect(server.ws_url, alice.token)
        for i in range(150):
            await sender.send({"type": "send", "conversation_id": world.channel_id, "text": f"{i} {big}"})
        await healthy.wait_for(lambda f: len(healthy.messages_in(world.channel_id)) == 150, timeout=60)
        carols = [c for c in hub.connections if str(c.user.id) == carol.id]
        assert len(carols) == 5 and all(c._drainer is not None for c in carols), "carol's sockets are stalled"
        started = time.monotonic()
        task = asyncio.create_task(drain(hub))
        await healthy.wait_for(lambda f: f["type"] == "reconnect", timeout=40)
        took = time.monotonic() - started
        await task
        assert took < 2.0, f"the healthy client got its reconnect frame after {took:.1f} s"
        for s in stalled:
            s.close()
        await sender.close()
        await healthy.close()
        await world.close()
    finally:
        await server.stop()


# -- a leave committed while the registration reads the memberships --------------------------------
async def test_a_leave_arriving_during_the_membership_read_is_not_undone_by_it(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    (c,) = await _connected(server, carol)
    original = SqlSession.list_user_workspaces
    armed = True

    async def leave_during_read(self: SqlSession, user_id: int) -> Any:
        nonlocal armed
        if armed and str(user_id) == bob.id:
            armed = False  # memberships were read already (bob still in the channel)
            await bob.post(f"/conversations/{channel}/leave", expect=204)
            await c.wait_for(lambda f: f["type"] == "member.left" and f["data"]["user_id"] == bob.id)
        return await original(self, user_id)

    monkeypatch.setattr(SqlSession, "list_user_workspaces", leave_during_read)
    b = await WsClient.connect(server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    assert not armed
    await alice.post(f"/conversations/{channel}/messages", {"text": "after bob left"}, expect=201)
    await asyncio.sleep(3)  # past a gap fill's 40 attempts
    await alice.post(f"/conversations/{channel}/messages", {"text": "later"}, expect=201)
    await asyncio.sleep(0.5)
    assert [(f["type"], f.get("seq")) for f in b.frames if f.get("conversation_id") == channel] == []
    await b.close()
    await c.close()
    await world.close()


# -- a leave whose pub/sub message is lost ---------------------------------------------------------
def _lose_member_left(
    monkeypatch: pytest.MonkeyPatch, hub: RealtimeHub, user_id: str, channels: set[str]
) -> None:
    """Drop, on ``channels`` (``"user"``, ``"conv"``), the pub/sub messages carrying the
    member.left of ``user_id``, as an overflowing delivery queue would."""
    dispatch = hub._dispatch

    async def lossy(channel: str, payload: bytes) -> None:
        event = orjson.loads(payload)
        left = event.get("type") == "member.left" and event["data"]["user_id"] == user_id
        if left and channel.partition(":")[0] in channels:
            return
        await dispatch(channel, payload)

    monkeypatch.setattr(hub, "_dispatch", lossy)


@pytest.mark.parametrize("lost", [{"user"}, {"user", "conv"}], ids=["user-channel", "both-channels"])
async def test_a_leaver_whose_member_left_is_lost_receives_nothing_more_of_the_conversation(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, lost: set[str]
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    b, c = await _connected(server, bob, carol)
    _lose_member_left(monkeypatch, _hub(server), bob.id, lost)

    await bob.post(f"/conversations/{channel}/leave", expect=204)
    await c.wait_for(lambda f: f["type"] == "member.left" and f["data"]["user_id"] == bob.id)
    await alice.post(f"/conversations/{channel}/messages", {"text": "after bob left"}, expect=201)
    await c.wait_for(
        lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "after bob left"
    )
    await asyncio.sleep(3)  # past a gap fill's 40 attempts
    await alice.post(f"/conversations/{channel}/messages", {"text": "later"}, expect=201)
    await c.send({"type": "typing", "conversation_id": channel})
    await c.wait_for(lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "later")
    await asyncio.sleep(0.5)

    mine = [f["type"] for f in b.frames if f.get("conversation_id") == channel and f["type"] != "member.left"]
    assert [f for f in mine if f != "member.joined"] == [], mine
    if lost == {"user"}:  # the conversation channel's copy told bob's socket
        assert [f["data"]["user_id"] for f in b.of_type("member.left")] == [bob.id]
    await b.close()
    await c.close()
    await world.close()


async def test_a_fill_refused_by_a_read_older_than_a_rejoin_keeps_following_the_conversation(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    channel = world.channel_id
    b, c = await _connected(server, bob, carol)
    # Bob's leave never reaches this node, so his socket still follows #general.
    _lose_member_left(monkeypatch, _hub(server), bob.id, {"user", "conv"})
    refused, rejoined = asyncio.Event(), asyncio.Event()
    real_replay = messages_actions.replay

    async def replay_read_before_the_rejoin(deps: Any, actor: Any, conversation_id: int, after: int) -> Any:
        try:
            return await real_replay(deps, actor, conversation_id, after)
        except Exception:
            if str(actor.id) == bob.id and not refused.is_set():
                refused.set()  # read while bob was out; answered after his rejoin was applied
                await rejoined.wait()
            raise

    monkeypatch.setattr("services.realtime.hub.replay", replay_read_before_the_rejoin)
    await bob.post(f"/conversations/{channel}/leave", expect=204)
    await alice.post(f"/conversations/{channel}/messages", {"text": "while bob is out"}, expect=201)
    async with asyncio.timeout(5):
        await refused.wait()  # the gap (bob's lost member.left) started a fill, refused
    await bob.post(f"/conversations/{channel}/join", expect=200)
    # Carol's copy comes on the conversation channel, after bob's own on his user channel: by
    # then this node has applied the rejoin (bob's socket holds it behind the fill).
    await c.wait_for(lambda f: f["type"] == "member.joined" and f["data"]["user_id"] == bob.id)
    rejoined.set()
    await alice.post(f"/conversations/{channel}/messages", {"text": "bob is back"}, expect=201)
    await b.wait_for(
        lambda f: f["type"] == "message.created" and f["data"]["message"]["text"] == "bob is back", timeout=5
    )
    seqs = [f["seq"] for f in b.frames if f.get("conversation_id") == channel and f.get("seq")]
    assert seqs == sorted(set(seqs)), seqs
    await b.close()
    await c.close()
    await world.close()
