"""Real engines stopped and started again while Parley runs (deploy/local/engines.sh).

- MySQL down: sends are refused with 503 and a reason; nothing is acknowledged; /readyz says why;
  when it returns, sends work again.
- Kafka down: sends still commit (outbox) and are delivered when Kafka returns, in order, once.
- Redis down: messages still commit; live delivery resumes when Redis returns, nothing missing.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.engines import engine_url
from tests.support.clients import WsClient
from tests.support.engines import engine_overrides
from tests.support.server import RunningServer, start_server, wait_until_flowing
from tests.support.wait import eventually
from tests.support.world import make_world

REPO = Path(__file__).resolve().parents[2]
# `serial`: these stop the shared engines, so `make test` runs them alone, after the parallel part.
pytestmark = [pytest.mark.engines, pytest.mark.serial]


def engines(action: str, engine: str) -> None:
    subprocess.run(["bash", str(REPO / "deploy/local/engines.sh"), action, engine], check=True, timeout=300)


@pytest.fixture
async def engine_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    with engine_overrides() as overrides:
        running = await start_server(tmp_path / "data", startup_timeout=120, **overrides)
        await wait_until_flowing(running)
        try:
            yield running
        finally:
            await running.stop()


async def test_mysql_down_refuses_sends_with_503_and_recovers(engine_server: RunningServer) -> None:
    engine_url("mysql")
    world = await make_world(engine_server.url)
    alice = world.users[0]
    engines("down", "mariadb")
    try:
        r = await alice.http.post(
            f"/api/v1/conversations/{world.channel_id}/messages", json={"text": "lost?"}
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"{engine_server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"] != "ok"
    finally:
        engines("up", "mariadb")
    sent = await eventually(
        lambda: alice.http.post(f"/api/v1/conversations/{world.channel_id}/messages", json={"text": "back"}),
        lambda r: r.status_code == 201,
        timeout=30,
    )
    history = await alice.get(f"/conversations/{world.channel_id}/messages")
    assert [m["text"] for m in history["messages"]] == ["back"], "the refused send was not stored"
    assert sent.json()["text"] == "back"
    await world.close()


async def test_kafka_down_sends_still_commit_and_arrive_in_order_when_it_returns(
    engine_server: RunningServer,
) -> None:
    engine_url("kafka")
    world = await make_world(engine_server.url)
    alice, bob = world.users
    b = await WsClient.connect(engine_server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    engines("down", "kafka")
    try:
        for i in range(10):
            await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"k{i}"}, expect=201)
    finally:
        engines("up", "kafka")
    await b.wait_for(lambda f: len(b.messages_in(world.channel_id)) == 10, timeout=90)
    texts = [f["data"]["message"]["text"] for f in b.messages_in(world.channel_id)]
    assert texts == [f"k{i}" for i in range(10)]
    seqs = [f["seq"] for f in b.frames if f.get("seq") is not None]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    await b.close()
    await world.close()


async def test_redis_down_degrades_but_loses_nothing(engine_server: RunningServer) -> None:
    engine_url("redis")
    world = await make_world(engine_server.url)
    alice, bob = world.users
    b = await WsClient.connect(engine_server.ws_url, bob.token)
    await b.wait_for(lambda f: f["type"] == "hello")
    engines("down", "redis")
    try:
        for i in range(5):
            await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"r{i}"}, expect=201)
        history = await alice.get(f"/conversations/{world.channel_id}/messages")
        assert len(history["messages"]) == 5, "history is served from MySQL while the cache is down"
    finally:
        engines("up", "redis")
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "after"}, expect=201)
    await b.wait_for(lambda f: len(b.messages_in(world.channel_id)) == 6, timeout=60)
    texts = [f["data"]["message"]["text"] for f in b.messages_in(world.channel_id)]
    assert texts == [f"r{i}" for i in range(5)] + ["after"]
    await b.close()
    await world.close()
