"""End to end through nginx, against the local cluster (nginx, api ×2, realtime ×2, relay,
fanout, indexer, cache on the real engines): what users notice when nodes die.

Every request and socket goes through the gateway; which node served it is read from the
``X-Upstream-Addr`` header nginx adds. Nodes are killed with SIGKILL (no shutdown hook runs);
supervisord restarts them, and each test waits for that before it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cluster
from tests.support.clients import ApiUser, WsClient
from tests.support.wait import eventually
from tests.support.world import make_world

# `serial`: one process runs every test of the session's one cluster (tests/e2e/conftest.py).
pytestmark = [pytest.mark.engines, pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.serial]
HEX_ID = re.compile(r"[0-9a-f]{32}")


# -- helpers -------------------------------------------------------------------------------------
def served_by(headers: Any) -> str:
    """The node that finally answered (nginx lists every node it tried, in order)."""
    return str(headers["X-Upstream-Addr"]).split(",")[-1].strip()


async def connect(cluster: Cluster, token: str) -> tuple[WsClient, str]:
    client = await WsClient.connect(cluster.ws_url, token, open_timeout=10)
    node = served_by(client.ws.response.headers)
    await client.wait_for(lambda f: f["type"] == "hello", timeout=10)
    return client, node


async def connect_avoiding(cluster: Cluster, token: str, node: str) -> tuple[WsClient, str]:
    """A socket on a realtime node other than ``node`` (nginx balances; we retry a few times)."""
    for _ in range(10):
        client, other = await connect(cluster, token)
        if other != node:
            return client, other
        await client.close()
    raise AssertionError(f"nginx sent 10 sockets in a row to {node}")


def created(client: WsClient, conversation_id: str) -> list[dict[str, Any]]:
    """Every message.created frame of a conversation as received (no dedupe)."""
    return [
        f
        for f in client.frames
        if f.get("type") == "message.created" and f.get("conversation_id") == conversation_id
    ]


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["data"]["message"]["id"] for f in frames]


async def send_rest(user: ApiUser, conversation_id: str, text: str, key: str) -> dict[str, Any]:
    message: dict[str, Any] = await user.post(
        f"/conversations/{conversation_id}/messages", {"text": text, "client_msg_id": key}, expect=201
    )
    return message


async def send_with_retry(
    user: ApiUser, conversation_id: str, text: str, key: str
) -> tuple[dict[str, Any], int]:
    """A POST is the client's to retry (nginx never re-sends one that reached a node): the same
    client_msg_id makes the retry return the stored message instead of a second one."""
    for retries in range(10):
        try:
            r = await user.http.post(
                f"/api/v1/conversations/{conversation_id}/messages", json={"text": text, "client_msg_id": key}
            )
            if r.status_code in (200, 201):
                body: dict[str, Any] = r.json()
                return body, retries
            assert r.status_code in (502, 503, 504), r.text
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"send {key} failed 10 times")


async def history(user: ApiUser, conversation_id: str) -> list[dict[str, Any]]:
    """The whole conversation, oldest first."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 200} | ({"before": before} if before else {})
        page = await user.get(f"/conversations/{conversation_id}/messages", params)
        out += page["messages"]
        if not page["has_more"]:
            return sorted(out, key=lambda m: m["seq"])
        before = page["messages"][-1]["seq"]


# -- the tests -------------------------------------------------------------------------------------
async def test_users_on_different_realtime_nodes_exchange_messages_both_ways_in_order(
    cluster: Cluster,
) -> None:
    world = await make_world(cluster.url)
    alice, bob = world.users
    channel = world.channel_id
    a, node_a = await connect(cluster, alice.token)
    b, node_b = await connect_avoiding(cluster, bob.token, node_a)
    assert {cluster.name_of(node_a), cluster.name_of(node_b)} == {"realtime-1", "realtime-2"}

    for n in range(10):
        await a.send(
            {"type": "send", "conversation_id": channel, "text": f"alice {n}", "client_msg_id": f"a{n}"}
        )
        await b.send(
            {"type": "send", "conversation_id": channel, "text": f"bob {n}", "client_msg_id": f"b{n}"}
        )
    for client in (a, b):
        await client.wait_for(lambda f, c=client: len(c.messages_in(channel)) == 20, timeout=30)

    for client in (a, b):
        frames = created(client, channel)
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == 20, "each message once, in seq order"
        texts = [f["data"]["message"]["text"] for f in frames]
        assert [t for t in texts if t.startswith("alice")] == [f"alice {n}" for n in range(10)]
        assert [t for t in texts if t.startswith("bob")] == [f"bob {n}" for n in range(10)]
    assert ids(created(a, channel)) == ids(created(b, channel)), "both users see one and the same order"
    for client in (a, b):
        await client.close()
    await world.close()


async def test_clients_of_a_killed_realtime_node_resume_on_the_other_missing_nothing(
    cluster: Cluster,
) -> None:
    world = await make_world(cluster.url)
    alice, bob = world.users
    channel = world.channel_id
    a, node_a = await connect(cluster, alice.token)
    b, node_b = await connect_avoiding(cluster, bob.token, node_a)
    victim = cluster.name_of(node_b)

    before = [await send_rest(alice, channel, f"before {i}", f"before-{i}") for i in range(5)]
    await b.wait_for(lambda f: len(b.messages_in(channel)) == 5, timeout=15)
    cursor = max(f["seq"] for f in created(b, channel))

    pid = cluster.kill(victim)
    await b.wait_closed(timeout=10)
    during = [await send_rest(alice, channel, f"during {i}", f"during-{i}") for i in range(10)]

    # Reconnect through nginx, as the web client does: nginx skips the dead node.
    b2, node_b2 = await connect(cluster, bob.token)
    assert node_b2 == node_a, f"reconnected to {node_b2}, the killed node was {node_b}"
    await b2.send({"type": "resume", "id": "r1", "cursors": {channel: cursor}})
    await b2.wait_for(lambda f: f.get("type") == "ack" and f.get("id") == "r1", timeout=10)
    after = [await send_rest(alice, channel, f"after {i}", f"after-{i}") for i in range(5)]

    missed_and_new = [m["id"] for m in during + after]
    await b2.wait_for(lambda f: missed_and_new[-1] in ids(created(b2, channel)), timeout=30)
    assert ids(created(b2, channel)) == missed_and_new, "nothing missing, nothing twice, in order"
    everything = [m["id"] for m in before + during + after]
    await a.wait_for(lambda f: everything[-1] in ids(created(a, channel)), timeout=30)
    assert ids(created(a, channel)) == everything, "the survivor's client saw the whole stream once"

    for client in (a, b2):
        await client.close()
    await world.close()
    await asyncio.to_thread(cluster.wait_ready, victim, not_pid=pid)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_rest_keeps_working_through_nginx_while_an_api_node_is_killed(
    cluster: Cluster, sig: signal.Signals
) -> None:
    world = await make_world(cluster.url)
    alice, bob = world.users
    channel = world.channel_id
    acknowledged: list[str] = []
    post_retries = 0
    get_statuses: list[int] = []
    get_nodes: set[str] = set()
    done = asyncio.Event()

    async def sender() -> None:
        nonlocal post_retries
        for i in range(60):
            message, retries = await send_with_retry(alice, channel, f"steady {i}", f"steady-{i}")
            acknowledged.append(message["id"])
            post_retries += retries
        done.set()

    async def reader() -> None:
        # No client-side retry here: GETs that hit the dead node are nginx's to retry.
        while not done.is_set():
            r = await bob.http.get(f"/api/v1/conversations/{channel}/messages", params={"limit": 5})
            get_statuses.append(r.status_code)
            get_nodes.add(served_by(r.headers))

    async def sent() -> int:
        return len(acknowledged)

    tasks = [asyncio.create_task(sender()), asyncio.create_task(reader())]
    await eventually(sent, lambda n: n >= 15, timeout=30)
    pid = cluster.kill("api-1", sig)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    assert get_statuses and set(get_statuses) == {200}, f"GET statuses: {sorted(set(get_statuses))}"
    assert cluster.address("api-2") in get_nodes
    stored = await history(bob, channel)
    assert [m["id"] for m in stored] == acknowledged, "every acknowledged send stored once, in order"
    assert post_retries <= 5, (
        f"{post_retries} client retries: nginx should route new requests around the dead node"
    )
    await world.close()
    await asyncio.to_thread(cluster.wait_ready, "api-1", not_pid=pid)


async def test_killing_relay_fanout_and_indexer_mid_stream_loses_nothing(cluster: Cluster) -> None:
    world = await make_world(cluster.url)
    alice, bob = world.users
    channel = world.channel_id
    word = f"kumquat{uuid.uuid4().hex[:8]}"
    b, _ = await connect(cluster, bob.token)
    acknowledged: list[dict[str, Any]] = []
    killed: dict[str, int] = {}
    kill_at = {10: "relay", 25: "fanout", 40: "indexer"}

    for i in range(60):
        if i in kill_at:
            killed[kill_at[i]] = cluster.kill(kill_at[i])
        message, _ = await send_with_retry(alice, channel, f"{word} {i}", f"stream-{i}")
        acknowledged.append(message)
    expected = [m["id"] for m in acknowledged]

    stored = await history(bob, channel)
    assert [m["id"] for m in stored] == expected, "every acknowledged message is stored once"
    await b.wait_for(lambda f: len(b.messages_in(channel)) == 60, timeout=90)
    seqs = [f["seq"] for f in created(b, channel)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) == 60, "delivered once each, in seq order"
    assert ids(created(b, channel)) == expected
    await eventually(
        lambda: bob.get("/search", {"q": word, "limit": 100}), lambda r: r["total"] == 60, timeout=90
    )

    await b.close()
    await world.close()
    for name, pid in killed.items():
        await asyncio.to_thread(cluster.wait_ready, name, not_pid=pid)


async def test_the_web_page_chats_through_the_gateway_under_its_csp(cluster: Cluster) -> None:
    """The page as served by nginx: its scripts load and its WebSocket connects under the
    gateway's Content-Security-Policy, and two people chat across the cluster."""
    from tests.browser.test_web_chat import CHROMIUM, CHROMIUM_ARGS, open_channel, require_browser

    require_browser()
    from playwright.async_api import async_playwright, expect

    world = await make_world(cluster.url)
    alice, bob = world.users
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a = await open_channel(browser, cluster.url, alice)
            b = await open_channel(browser, cluster.url, bob)
            violations: list[str] = []
            for chat in (a, b):
                chat.page.on(
                    "console",
                    lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
                )
            await a.send("general", "through nginx")
            seen = b.messages.get_by_role("listitem").filter(has_text="through nginx")
            await expect(seen).to_be_visible(timeout=10_000)
            assert violations == [] and a.errors == [] and b.errors == []
        finally:
            await browser.close()
    await world.close()


# Last on purpose: it spends this address's login budget at nginx for the next minute.
async def test_nginx_rate_limits_login_with_a_json_429(cluster: Cluster) -> None:
    user = await ApiUser.signup(cluster.url)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        for _ in range(12):
            responses.append(
                await http.post(
                    "/api/v1/auth/login", json={"username": user.username, "password": "correct horse"}
                )
            )
    statuses = [r.status_code for r in responses]
    assert statuses[0] == 200, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert limited, f"12 logins in a burst were all let through: {statuses}"
    assert limited[0].json()["error"]["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) > 0
    assert "X-Upstream-Addr" not in limited[0].headers, "nginx answered; no api node spent a password hash"
    await user.close()


async def test_request_ids_are_generated_echoed_and_logged_with_the_upstream(cluster: Cluster) -> None:
    user = await ApiUser.signup(cluster.url)
    mine = f"e2e-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        plain = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {user.token}"})
        echoed = await http.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {user.token}", "X-Request-ID": mine}
        )
        forged = await http.get("/api/v1/users/me", headers={"X-Request-ID": "not an id; " + "x" * 80})
    assert plain.status_code == 200 and HEX_ID.fullmatch(plain.headers["X-Request-ID"])
    assert echoed.headers.get_list("X-Request-ID") == [mine], "one header, the caller's id"
    assert HEX_ID.fullmatch(forged.headers["X-Request-ID"]), "a malformed id is replaced, not logged"

    def logged() -> list[dict[str, Any]]:
        lines = cluster.access_log.read_text().splitlines()
        return [json.loads(line) for line in lines if mine in line]

    entries = await eventually(lambda: asyncio.to_thread(logged), lambda e: len(e) == 1, timeout=10)
    entry = entries[0]
    assert entry["status"] == 200 and entry["uri"] == "/api/v1/users/me"
    assert entry["upstream_addr"] in {cluster.address("api-1"), cluster.address("api-2")}
    await user.close()


async def test_gateway_serves_the_page_with_security_headers_and_gzipped_json(cluster: Cluster) -> None:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=10) as http:
        page = await http.get("/")
        script = await http.get("/static/app.js")
        health = await http.get("/healthz")
        openapi = await http.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert health.json() == {"status": "ok", "service": "gateway"}
    assert openapi.status_code == 200 and openapi.headers.get("Content-Encoding") == "gzip"
    assert "/api/v1/auth/login" in openapi.json()["paths"]


def test_consumers_off_the_users_path_run_at_a_lower_cpu_priority(cluster: Cluster) -> None:
    """The indexer and the cache yield the cores to the hops a delivery waits on."""
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # what the launcher's children inherit
    niceness = {
        name: os.getpriority(os.PRIO_PROCESS, cluster.pid(name))
        for name in ("indexer", "cache", "realtime-1", "relay", "fanout", "api-1")
    }
    assert niceness == {
        "indexer": base + 10,
        "cache": base + 10,
        "realtime-1": base,
        "relay": base,
        "fanout": base,
        "api-1": base,
    }
