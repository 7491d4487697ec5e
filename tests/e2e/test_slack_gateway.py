"""The Slack-compatible API through nginx on the local cluster (two slack nodes behind the
gateway, next to api ×2 and realtime ×2): the real ``slack_sdk`` ``WebClient`` and a
``slack_bolt`` app in Socket Mode talk to ``http://<nginx>/api/`` only, and what they do is
ordinary Parley, read back through Parley's own REST API on the same gateway.

Which node served a request is read from nginx's ``X-Upstream-Addr``; a Socket Mode node
names itself in its ``hello`` frame (``debug_info.host``, ``parley-<node id>``).
"""

from __future__ import annotations

import asyncio
import json
import queue
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from services.slack import ids
from tests.e2e.conftest import Cluster
from tests.e2e.test_cluster import served_by
from tests.slack.conftest import user_token
from tests.support.clients import ApiUser
from tests.support.wait import eventually
from tests.support.world import World, make_world

# `serial`: one process runs every test of the session's one cluster (tests/e2e/conftest.py).
pytestmark = [pytest.mark.engines, pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.serial]
DELIVERY_TIMEOUT = 30.0
# search.messages reads Elasticsearch, fed by the indexer from Kafka: a refresh or two behind.
INDEXING_TIMEOUT = 30.0


# -- helpers -------------------------------------------------------------------------------------
def web(cluster: Cluster, token: str | None) -> WebClient:
    """The SDK pointed at the gateway, exactly as a bot author would configure it."""
    return WebClient(token=token, base_url=f"{cluster.url}/api/", timeout=15)


def nodes(cluster: Cluster, kind: str) -> set[str]:
    return {cluster.address(p["name"]) for p in cluster.manifest["processes"] if p["kind"] == kind}


async def create_bot(owner: ApiUser, workspace_id: str, events: list[str] | None = None) -> dict[str, Any]:
    """``POST /slack/bots`` through nginx with a Parley login: bot_user_id, bot_id, app_id,
    team_id, bot_token (xoxb-), app_token (xapp-)."""
    body: dict[str, Any] = {"workspace_id": workspace_id, "name": f"bot{uuid.uuid4().hex[:8]}"}
    if events is not None:
        body["events"] = events
    r = await owner.http.post("/slack/bots", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def parley_channel(slack_channel_id: str) -> str:
    parsed = ids.parse_channel(slack_channel_id)
    assert parsed is not None, slack_channel_id
    return str(parsed[1])


async def parley_messages(user: ApiUser, conversation_id: str) -> tuple[list[dict[str, Any]], str]:
    """The newest page of Parley history via REST through nginx, and the node that served it."""
    r = await user.http.get(f"/api/v1/conversations/{conversation_id}/messages", params={"limit": 50})
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages, served_by(r.headers)


async def open_socket(cluster: Cluster, app_token: str) -> tuple[Any, dict[str, Any], str]:
    """One Socket Mode socket the way Slack's clients open it: ``apps.connections.open`` for a
    URL, then a WebSocket to that URL. Returns the socket, its hello frame and its node."""
    url = web(cluster, None).apps_connections_open(app_token=app_token)["url"]
    ws = await websockets.connect(url, open_timeout=10)
    hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert hello["type"] == "hello", hello
    assert ws.response is not None
    return ws, hello, served_by(ws.response.headers)


@pytest.fixture
async def world(cluster: Cluster) -> Any:
    made = await make_world(cluster.url)
    yield made
    await made.close()


# -- the tests -------------------------------------------------------------------------------------
async def test_slack_sdk_web_api_through_nginx_is_parley(cluster: Cluster, world: World) -> None:
    alice, bob = world.users
    alice_slack = web(cluster, await user_token(alice, world.workspace_id))
    bot = await create_bot(alice, world.workspace_id)
    bot_slack = web(cluster, bot["bot_token"])
    slack_nodes = nodes(cluster, "slack")

    me = alice_slack.auth_test()
    assert me["user_id"] == ids.user_id(int(alice.id)) and me["team_id"] == bot["team_id"]
    assert served_by(me.headers) in slack_nodes, "a Slack method is served by a slack node"
    bot_me = bot_slack.auth_test()
    assert bot_me["bot_id"] == bot["bot_id"] and bot_me["user_id"] == bot["bot_user_id"]

    listed = alice_slack.conversations_list(types="public_channel")
    general = next(c for c in listed["channels"] if c["name"] == "general")
    assert parley_channel(general["id"]) == world.channel_id and general["is_member"]

    name = f"deploys-{uuid.uuid4().hex[:6]}"
    channel = alice_slack.conversations_create(name=name)["channel"]["id"]
    joined = bot_slack.conversations_join(channel=channel)
    assert joined["channel"]["id"] == channel
    word = f"zephyr{uuid.uuid4().hex[:8]}"
    root = bot_slack.chat_postMessage(channel=channel, text=f"release {word} shipped <@{me['user_id']}>")
    reply = alice_slack.chat_postMessage(channel=channel, text="thanks!", thread_ts=root["ts"])
    assert reply["message"]["thread_ts"] == root["ts"]
    alice_slack.reactions_add(channel=channel, timestamp=root["ts"], name="tada")

    async def bot_history() -> Any:
        return bot_slack.conversations_history(channel=channel, limit=10)

    # The first history page comes from the history cache, which follows replies and
    # reactions a moment after they are made.
    history = await eventually(
        bot_history,
        lambda h: bool(h["messages"]) and "reactions" in h["messages"][0],
        timeout=DELIVERY_TIMEOUT,
    )
    top = history["messages"][0]
    assert top["ts"] == root["ts"] and top["bot_id"] == bot["bot_id"]
    assert top["reply_count"] == 1 and top["thread_ts"] == root["ts"]
    assert top["reactions"] == [{"name": "tada", "users": [me["user_id"]], "count": 1}]

    async def search() -> Any:
        return alice_slack.search_messages(query=word)

    found = await eventually(search, lambda r: r["messages"]["total"] >= 1, timeout=INDEXING_TIMEOUT)
    assert found["messages"]["matches"][0]["ts"] == root["ts"]
    assert found["messages"]["matches"][0]["channel"]["id"] == channel

    # The same conversation through Parley's REST API on the same gateway: ordinary messages.
    messages, node = await parley_messages(alice, parley_channel(channel))
    assert node in nodes(cluster, "api"), "Parley's /api/v1 still goes to the api nodes"
    posted = next(m for m in messages if word in m["text"])
    assert posted["text"] == f"release {word} shipped @{alice.username}"
    assert posted["user_id"] == str(ids.parse_user(bot["bot_user_id"]))
    assert posted["mentions"] == [alice.id] and posted["reply_count"] == 1
    assert [r["emoji"] for r in posted["reactions"]] == ["tada"]
    thread = await alice.get(f"/messages/{posted['id']}/replies")
    assert [m["text"] for m in thread["replies"]] == ["thanks!"]
    # A channel made through the facade is a Parley channel: bob may join it, and has not yet.
    bob_view = web(cluster, await user_token(bob, world.workspace_id)).conversations_list()
    assert next(c for c in bob_view["channels"] if c["id"] == channel)["is_member"] is False


async def test_parley_rest_routes_and_slack_paths_go_to_their_own_nodes(
    cluster: Cluster, world: World
) -> None:
    alice = world.users[0]
    api_nodes, slack_nodes = nodes(cluster, "api"), nodes(cluster, "slack")
    me = await alice.http.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["id"] == alice.id
    assert served_by(me.headers) in api_nodes
    sent = await alice.http.post(
        f"/api/v1/conversations/{world.channel_id}/messages",
        json={"text": "still REST", "client_msg_id": "r1"},
    )
    assert sent.status_code == 201 and served_by(sent.headers) in api_nodes
    unknown = await alice.http.get("/api/v1/no-such-route")
    assert unknown.status_code == 404 and served_by(unknown.headers) in api_nodes

    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        # Slack method names with digits (oauth.v2.access) reach the facade too, which answers
        # Slack's way instead of Parley's 404.
        oauth = await http.post("/api/oauth.v2.access")
        assert oauth.status_code == 200 and oauth.json() == {
            "ok": False,
            "error": "unknown_method",
            "req_method": "oauth.v2.access",
        }
        assert served_by(oauth.headers) in slack_nodes
        echo = await http.get("/api/api.test", params={"foo": "bar"}, headers={"X-Request-ID": "slack-e2e-1"})
        assert echo.json() == {"ok": True, "args": {"foo": "bar"}}
        # The gateway's conventions hold on the new locations: one request id, security headers.
        assert echo.headers.get_list("X-Request-ID") == ["slack-e2e-1"]
        assert echo.headers["X-Content-Type-Options"] == "nosniff"
        assert echo.headers["X-Frame-Options"] == "DENY"
        # /slack/… is the facade's (a Parley login is needed), anything else still the gateway's 404
        no_login = await http.post("/slack/tokens", json={"workspace_id": world.workspace_id})
        assert no_login.status_code == 401 and served_by(no_login.headers) in slack_nodes
        elsewhere = await http.get("/slackish")
        assert elsewhere.status_code == 404 and elsewhere.headers.get("X-Upstream-Addr", "") == ""


async def test_a_slack_rate_limit_reaches_the_client_with_the_services_retry_after(
    cluster: Cluster, world: World
) -> None:
    """The facade's token bucket (burst 200, 50/s) answers 429 with its own Retry-After; nginx
    must not add its login limit's Retry-After next to it (clients keep the last one)."""
    token = await user_token(world.users[1], world.workspace_id)
    limited: list[httpx.Response] = []
    async with httpx.AsyncClient(
        base_url=cluster.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
    ) as http:

        async def hammer() -> None:
            for _ in range(100):
                if limited:
                    return
                r = await http.post("/api/auth.test")
                if r.status_code == 429:
                    limited.append(r)
                else:
                    assert r.status_code == 200 and r.json()["ok"], r.text

        await asyncio.wait_for(asyncio.gather(*(hammer() for _ in range(16))), timeout=60)
    assert limited, "1600 calls within a minute never met the 50/s bucket"
    r = limited[0]
    assert r.json() == {"ok": False, "error": "ratelimited"}
    assert r.headers.get_list("Retry-After") == ["1"], r.headers.get_list("Retry-After")


async def test_an_apps_sockets_are_pinned_to_one_slack_node_by_the_gateway(
    cluster: Cluster, world: World
) -> None:
    alice = world.users[0]
    gateway = urlsplit(cluster.url)
    for _ in range(4):
        bot = await create_bot(alice, world.workspace_id)
        url = web(cluster, None).apps_connections_open(app_token=bot["app_token"])["url"]
        parts = urlsplit(url)
        # The URL names the gateway the client called, not the node's private port.
        assert (parts.scheme, parts.netloc, parts.path) == ("ws", gateway.netloc, "/slack/socket")
        assert parse_qs(parts.query)["app"] == [bot["app_id"]]

        sockets = [await open_socket(cluster, bot["app_token"]) for _ in range(3)]
        try:
            assert len({node for _, _, node in sockets}) == 1, "one app, one node"
            assert {hello["debug_info"]["host"] for _, hello, _ in sockets} == {
                sockets[0][1]["debug_info"]["host"]
            }
            # The node counts them as one session's sockets.
            assert [hello["num_connections"] for _, hello, _ in sockets] == [1, 2, 3]
            assert sockets[0][2] in nodes(cluster, "slack")
        finally:
            for ws, _, _ in sockets:
                await ws.close()

    # The socket URL carries a ticket: the access log (path only) must never show it. nginx
    # writes a tunnel's line when it closes, so wait for the twelve.
    async def socket_lines() -> list[dict[str, Any]]:
        lines = cluster.access_log.read_text().splitlines()
        return [json.loads(line) for line in lines if "/slack/socket" in line]

    logged = await eventually(socket_lines, lambda lines: len(lines) >= 12, timeout=10)
    assert all(line["uri"] == "/slack/socket" and line["status"] == 101 for line in logged)
    assert "ticket" not in cluster.access_log.read_text()


async def test_a_bolt_app_in_socket_mode_through_nginx_replies_as_a_parley_message(
    cluster: Cluster, world: World
) -> None:
    alice = world.users[0]
    bot = await create_bot(alice, world.workspace_id)
    bot_slack = web(cluster, bot["bot_token"])
    channel = next(c["id"] for c in bot_slack.conversations_list()["channels"] if c["name"] == "general")
    bot_slack.conversations_join(channel=channel)
    handled: queue.Queue[dict[str, Any]] = queue.Queue()
    hellos: queue.Queue[dict[str, Any]] = queue.Queue()

    def start() -> SocketModeHandler:
        # App() checks its token with auth.test at once: a blocking call, so in this thread.
        app = App(client=web(cluster, bot["bot_token"]))

        @app.message("ping")
        def pong(message: dict[str, Any], say: Any) -> None:
            handled.put(message)
            say(f"pong <@{message['user']}>")

        handler = SocketModeHandler(app, bot["app_token"])
        handler.client.message_listeners.append(
            lambda _client, message, _raw: hellos.put(message) if message.get("type") == "hello" else None
        )
        handler.connect()  # type: ignore[no-untyped-call]
        return handler

    handler = await asyncio.to_thread(start)
    try:
        hello = await asyncio.to_thread(hellos.get, True, DELIVERY_TIMEOUT)
        assert hello["connection_info"]["app_id"] == bot["app_id"]
        sent = await alice.post(
            f"/conversations/{world.channel_id}/messages",
            {"text": "ping", "client_msg_id": "ping-1"},
            expect=201,
        )
        bot_user = str(ids.parse_user(bot["bot_user_id"]))

        async def history() -> list[dict[str, Any]]:
            messages, node = await parley_messages(alice, world.channel_id)
            assert node in nodes(cluster, "api")
            return messages

        # The bot's reply is an ordinary message in Parley's history, after alice's ping.
        messages = await eventually(
            history, lambda ms: any(m["user_id"] == bot_user for m in ms), timeout=DELIVERY_TIMEOUT
        )
        from_bot = [m for m in messages if m["user_id"] == bot_user]
        assert len(from_bot) == 1, "say() posted once"
        reply = from_bot[0]
        assert reply["text"] == f"pong @{alice.username}" and reply["mentions"] == [alice.id]
        assert reply["seq"] > sent["seq"] and reply["thread_root_id"] is None
        message = handled.get_nowait()
        assert message["user"] == ids.user_id(int(alice.id)) and message["channel"] == channel
        assert message["text"] == "ping"
    finally:
        await asyncio.to_thread(handler.close)
