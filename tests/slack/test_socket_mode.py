"""Socket Mode with the real clients: ``slack_bolt`` ``App`` (built-in socket client, threads)
and ``AsyncApp`` (aiohttp) receive messages that Parley users post over Parley's REST API and
reply with ``say()``, which the Parley user sees on Parley's WebSocket; ``slack_sdk``'s
``SocketModeClient`` shows envelopes, acks, redelivery and ``disconnect`` + reconnect."""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import WSMessage
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from services.slack import ids
from services.slack.settings import SlackSettings
from tests.slack.conftest import SlackWorld
from tests.support.clients import WsClient
from tests.support.wait import eventually

DELIVERY_TIMEOUT = 20.0


def parley_id(slack_user_id: str) -> str:
    number = ids.parse_user(slack_user_id)
    assert number is not None
    return str(number)


def from_user(user_id: str, text: str | None = None) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        if frame.get("type") != "message.created":
            return False
        message = frame["data"]["message"]
        return bool(message["user_id"] == user_id and (text is None or message["text"] == text))

    return match


@asynccontextmanager
async def parley_socket(slack: SlackWorld) -> AsyncIterator[WsClient]:
    ws = await WsClient.connect(slack.server.ws_url, slack.alice.token)
    await ws.wait_for(lambda f: f.get("type") == "hello")
    try:
        yield ws
    finally:
        await ws.close()


class Frames:
    """Every text frame an aiohttp socket client received (hello, disconnect, envelopes),
    recorded by its raw-message hook (``disconnect`` never reaches its parsed listeners)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def listener(self, message: WSMessage) -> None:
        self.frames.append(json.loads(message.data))

    def count(self, type_: str) -> int:
        return sum(1 for f in self.frames if f.get("type") == type_)

    async def wait_count(self, type_: str, n: int, timeout: float = DELIVERY_TIMEOUT) -> None:
        await eventually(lambda: _value(self.count(type_)), lambda c: c >= n, timeout=timeout)


async def _value(value: Any) -> Any:
    return value


async def acked(slack: SlackWorld, bot_user_id: str, seq: int) -> None:
    """Wait until the app was sent #general's events up to ``seq`` and acknowledged them all
    (its own reply included), so closing it interrupts nothing."""
    session = slack.server.app.state.slack_socket_hub.sessions[int(parley_id(bot_user_id))]
    channel = int(slack.world.channel_id)
    await eventually(
        lambda: _value((session.emitted.get(channel, 0), len(session.unacked))),
        lambda state: state[0] >= seq and state[1] == 0,
    )


async def test_bolt_app_receives_a_parley_message_and_replies_with_say(slack: SlackWorld) -> None:
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    handled: queue.Queue[dict[str, Any]] = queue.Queue()
    hellos: queue.Queue[str] = queue.Queue()

    def start() -> SocketModeHandler:
        # App() checks its token with auth.test at once: a blocking call, so in this thread.
        app = App(client=WebClient(token=slack.bot["bot_token"], base_url=slack.api_url))

        @app.message("ping")
        def pong(message: dict[str, Any], say: Any) -> None:
            handled.put(message)
            say(f"pong <@{message['user']}>")

        handler = SocketModeHandler(app, slack.bot["app_token"])
        handler.client.message_listeners.append(
            lambda _client, message, _raw: (
                hellos.put(message["type"]) if message.get("type") == "hello" else None
            )
        )
        handler.connect()
        return handler

    handler = await asyncio.to_thread(start)
    try:
        await asyncio.to_thread(hellos.get, True, DELIVERY_TIMEOUT)
        async with parley_socket(slack) as ws:
            await slack.alice.post(
                f"/conversations/{slack.world.channel_id}/messages", {"text": "ping"}, expect=201
            )
            reply = await ws.wait_for(
                from_user(parley_id(slack.bot["bot_user_id"])), timeout=DELIVERY_TIMEOUT
            )
        assert reply["data"]["message"]["text"] == f"pong @{slack.alice.username}"
        assert reply["data"]["message"]["mentions"] == [slack.alice.id]
        message = handled.get_nowait()
        assert message["user"] == slack.alice_id and message["channel"] == slack.channel
        assert message["text"] == "ping" and message["channel_type"] == "channel"
        await acked(slack, slack.bot["bot_user_id"], reply["seq"])
    finally:
        await asyncio.to_thread(handler.close)


async def test_async_bolt_app_replies_in_thread_to_a_mention(slack: SlackWorld) -> None:
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    app = AsyncApp(client=AsyncWebClient(token=slack.bot["bot_token"], base_url=slack.api_url))
    seen: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any], say: Any) -> None:
        seen.append(event)
        await say(text=f"at your service <@{event['user']}>", thread_ts=event["ts"])

    @app.message("ping")
    async def pong(message: dict[str, Any], say: Any) -> None:
        await say("pong")

    handler = AsyncSocketModeHandler(app, slack.bot["app_token"])
    frames = Frames()
    handler.client.on_message_listeners.append(frames.listener)
    await handler.connect_async()
    try:
        await frames.wait_count("hello", 1)
        bot_name = (await slack.async_web(slack.bot["bot_token"]).auth_test())["user"]
        async with parley_socket(slack) as ws:
            await slack.bob.post(
                f"/conversations/{slack.world.channel_id}/messages", {"text": "ping"}, expect=201
            )
            await ws.wait_for(
                from_user(parley_id(slack.bot["bot_user_id"]), "pong"), timeout=DELIVERY_TIMEOUT
            )
            root = await slack.alice.post(
                f"/conversations/{slack.world.channel_id}/messages", {"text": f"@{bot_name} help"}, expect=201
            )
            reply = await ws.wait_for(
                from_user(parley_id(slack.bot["bot_user_id"]), f"at your service @{slack.alice.username}"),
                timeout=DELIVERY_TIMEOUT,
            )
        assert reply["data"]["message"]["thread_root_id"] == root["id"]
        assert seen[0]["text"] == f"<@{slack.bot['bot_user_id']}> help" and seen[0]["user"] == slack.alice_id
    finally:
        await handler.close_async()


async def ack_all(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
    await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


async def _socket_client(
    slack: SlackWorld, app_token: str, listener: Any = None
) -> tuple[SocketModeClient, Frames]:
    """A connected ``SocketModeClient``; ``listener`` handles requests from the first one on."""
    client = SocketModeClient(app_token=app_token, web_client=AsyncWebClient(base_url=slack.api_url))
    frames = Frames()
    client.on_message_listeners.append(frames.listener)
    if listener is not None:
        client.socket_mode_request_listeners.append(listener)
    await client.connect()
    await frames.wait_count("hello", 1)
    return client, frames


def envelopes(frames: Frames, text: str | None = None) -> list[dict[str, Any]]:
    return [
        f
        for f in frames.frames
        if f.get("type") == "events_api" and (text is None or f["payload"]["event"].get("text") == text)
    ]


async def test_unacknowledged_envelopes_are_redelivered_then_dropped(slack: SlackWorld) -> None:
    hub = slack.server.app.state.slack_socket_hub
    hub.settings = SlackSettings(ack_timeout=0.5, max_retries=2)
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    requests: list[SocketModeRequest] = []

    async def ack_only_the_first_retry(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        requests.append(req)
        text = req.payload["event"].get("text")
        if text == "ack on retry" and req.retry_attempt == 1:
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client, frames = await _socket_client(slack, slack.bot["app_token"], ack_only_the_first_retry)
    try:
        await slack.alice.post(
            f"/conversations/{slack.world.channel_id}/messages", {"text": "ack on retry"}, expect=201
        )
        await slack.alice.post(
            f"/conversations/{slack.world.channel_id}/messages", {"text": "never acked"}, expect=201
        )
        # 1 + max_retries deliveries of the unacked one, then it is dropped.
        await eventually(lambda: _value(len(envelopes(frames, "never acked"))), lambda n: n >= 3)
        await asyncio.sleep(1.5)
        acked, never = envelopes(frames, "ack on retry"), envelopes(frames, "never acked")
        assert [e["retry_attempt"] for e in acked] == [0, 1]
        assert [e["retry_reason"] for e in acked] == ["", "timeout"]
        assert len({e["envelope_id"] for e in acked}) == 1
        assert len({e["payload"]["event_id"] for e in acked}) == 1
        assert [e["retry_attempt"] for e in never] == [0, 1, 2]
        first = acked[0]
        assert first["payload"]["type"] == "event_callback" and first["payload"]["team_id"] == slack.team_id
        assert first["payload"]["api_app_id"] == slack.bot["app_id"]
        assert first["payload"]["authorizations"][0]["user_id"] == slack.bot["bot_user_id"]
        assert first["payload"]["event"]["channel"] == slack.channel
    finally:
        await client.close()


async def test_disconnect_makes_the_app_reconnect_and_delivery_continues(slack: SlackWorld) -> None:
    hub = slack.server.app.state.slack_socket_hub
    hub.settings = SlackSettings(disconnect_grace=1.0)
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    app = AsyncApp(client=AsyncWebClient(token=slack.bot["bot_token"], base_url=slack.api_url))

    @app.message("ping")
    async def pong(message: dict[str, Any], say: Any) -> None:
        await say(f"pong {message['text']}")

    handler = AsyncSocketModeHandler(app, slack.bot["app_token"])
    frames = Frames()
    handler.client.on_message_listeners.append(frames.listener)
    await handler.connect_async()
    bot = parley_id(slack.bot["bot_user_id"])
    try:
        await frames.wait_count("hello", 1)
        async with parley_socket(slack) as ws:
            await slack.alice.post(
                f"/conversations/{slack.world.channel_id}/messages", {"text": "ping 1"}, expect=201
            )
            await ws.wait_for(from_user(bot, "pong ping 1"), timeout=DELIVERY_TIMEOUT)
            assert hub.refresh(int(bot)) == 1
            await frames.wait_count("disconnect", 1)
            await frames.wait_count("hello", 2)
            session = hub.sessions[int(bot)]
            await eventually(lambda: _value(len(session.connections)), lambda n: n == 1, timeout=10)
            await slack.alice.post(
                f"/conversations/{slack.world.channel_id}/messages", {"text": "ping 2"}, expect=201
            )
            await ws.wait_for(from_user(bot, "pong ping 2"), timeout=DELIVERY_TIMEOUT)
        disconnect = next(f for f in frames.frames if f.get("type") == "disconnect")
        assert disconnect["reason"] == "refresh_requested"
    finally:
        await handler.close_async()


async def test_events_wait_for_an_app_that_reconnects(slack: SlackWorld) -> None:
    hub = slack.server.app.state.slack_socket_hub
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    bot = int(parley_id(slack.bot["bot_user_id"]))
    client, _ = await _socket_client(slack, slack.bot["app_token"])
    await client.close()
    session = hub.sessions[bot]
    await eventually(lambda: _value(len(session.connections)), lambda n: n == 0)
    await slack.alice.post(
        f"/conversations/{slack.world.channel_id}/messages", {"text": "while away"}, expect=201
    )
    await eventually(lambda: _value(len(session.backlog)), lambda n: n == 1, timeout=DELIVERY_TIMEOUT)
    client, frames = await _socket_client(slack, slack.bot["app_token"])
    try:
        await eventually(lambda: _value(len(envelopes(frames, "while away"))), lambda n: n == 1)
    finally:
        await client.close()


async def test_an_envelope_left_unacked_by_a_closed_socket_goes_to_the_next_one(slack: SlackWorld) -> None:
    hub = slack.server.app.state.slack_socket_hub
    hub.settings = SlackSettings(ack_timeout=0.5)
    await slack.async_web(slack.bot["bot_token"]).conversations_join(channel=slack.channel)
    session_key = int(parley_id(slack.bot["bot_user_id"]))
    first, first_frames = await _socket_client(slack, slack.bot["app_token"])
    await slack.alice.post(
        f"/conversations/{slack.world.channel_id}/messages", {"text": "left hanging"}, expect=201
    )
    await eventually(lambda: _value(len(envelopes(first_frames, "left hanging"))), lambda n: n == 1)
    await first.close()  # never acknowledged
    session = hub.sessions[session_key]
    await eventually(lambda: _value(len(session.backlog)), lambda n: n == 1, timeout=DELIVERY_TIMEOUT)
    await asyncio.sleep(0.5)
    assert len(session.backlog) == 1 and not session.unacked, "it waits once, not once per retry"

    second, second_frames = await _socket_client(slack, slack.bot["app_token"], ack_all)
    try:
        await eventually(lambda: _value(len(envelopes(second_frames, "left hanging"))), lambda n: n == 1)
        original, again = (
            envelopes(first_frames, "left hanging")[0],
            envelopes(second_frames, "left hanging")[0],
        )
        assert again["envelope_id"] == original["envelope_id"]
        assert (again["retry_attempt"], again["retry_reason"]) == (1, "timeout")
        await eventually(lambda: _value(len(session.unacked)), lambda n: n == 0)
        await asyncio.sleep(1.0)
        assert len(envelopes(second_frames, "left hanging")) == 1, "acknowledged: not sent again"
    finally:
        await second.close()


async def test_bot_events_cover_messages_edits_deletes_reactions_and_membership(slack: SlackWorld) -> None:
    bot = await slack.new_bot(
        events=[
            "message",
            "app_mention",
            "reaction_added",
            "reaction_removed",
            "member_joined_channel",
            "member_left_channel",
        ]
    )
    client, frames = await _socket_client(slack, bot["app_token"], ack_all)
    try:
        web = slack.async_web(bot["bot_token"])
        await web.conversations_join(channel=slack.channel)
        channel_path = f"/conversations/{slack.world.channel_id}/messages"
        sent = await slack.alice.post(
            channel_path, {"text": f"hello @{(await web.auth_test())['user']}"}, expect=201
        )
        await slack.bob.post(f"/messages/{sent['id']}/reactions", {"emoji": "tada"}, expect=204)
        await slack.alice.http.patch(f"/api/v1/messages/{sent['id']}", json={"text": "hello everyone"})
        await slack.alice.http.delete(f"/api/v1/messages/{sent['id']}")
        await web.conversations_leave(channel=slack.channel)

        def events() -> list[dict[str, Any]]:
            return [e["payload"]["event"] for e in envelopes(frames)]

        await eventually(
            lambda: _value(events()), lambda ev: any(e["type"] == "member_left_channel" for e in ev)
        )
        kinds = [(e["type"], e.get("subtype")) for e in events()]
        assert kinds == [
            ("member_joined_channel", None),
            ("message", None),
            ("app_mention", None),
            ("reaction_added", None),
            ("message", "message_changed"),
            ("message", "message_deleted"),
            ("member_left_channel", None),
        ]
        joined, message, mention, reaction, changed, deleted, left = events()
        assert left["user"] == bot["bot_user_id"] and left["channel"] == slack.channel
        assert joined["user"] == bot["bot_user_id"] and joined["channel"] == slack.channel
        assert message["text"] == f"hello <@{bot['bot_user_id']}>" and message["user"] == slack.alice_id
        assert mention["ts"] == message["ts"] and mention["channel"] == slack.channel
        assert reaction["reaction"] == "tada" and reaction["user"] == slack.bob_id
        assert reaction["item"] == {"type": "message", "channel": slack.channel, "ts": message["ts"]}
        assert reaction["item_user"] == slack.alice_id
        assert changed["message"]["ts"] == message["ts"] and changed["message"]["text"] == "hello everyone"
        assert deleted["deleted_ts"] == message["ts"]
        # app_mention is the message seen again (same event_ts); every other event has its own.
        stamps = [float(e["event_ts"]) for e in events() if e["type"] != "app_mention"]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "event_ts increase per channel"
    finally:
        await client.close()


async def test_a_socket_needs_a_valid_ticket_from_an_app_token(slack: SlackWorld) -> None:
    opened = await slack.async_web(slack.bot["app_token"]).apps_connections_open(
        app_token=slack.bot["app_token"]
    )
    assert opened["url"].startswith("ws://") and "/slack/socket?" in opened["url"]
    assert f"app={slack.bot['app_id']}" in opened["url"]
    import websockets

    bad = opened["url"].split("ticket=")[0] + "ticket=forged"
    try:
        async with websockets.connect(bad):
            raise AssertionError("a forged ticket must be refused")
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 403
