"""Search: full text, filters, highlights, pagination, and never another member's messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.server import RunningServer
from tests.support.wait import eventually
from tests.support.world import make_world


async def test_search_finds_highlights_and_filters(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    await alice.post(
        f"/conversations/{world.channel_id}/messages", {"text": "the deploy <b>failed</b> again"}, expect=201
    )
    await bob.post(f"/conversations/{world.channel_id}/messages", {"text": "deploy fixed"}, expect=201)
    await bob.post(f"/conversations/{world.channel_id}/messages", {"text": "lunch?"}, expect=201)

    result = await eventually(lambda: alice.get("/search", {"q": "deploy"}), lambda r: r["total"] == 2)
    texts = {m["message"]["text"] for m in result["matches"]}
    assert texts == {"the deploy <b>failed</b> again", "deploy fixed"}
    hl = next(m["highlight"] for m in result["matches"] if "failed" in m["message"]["text"])
    assert "<mark>deploy</mark>" in hl and "&lt;b&gt;failed&lt;/b&gt;" in hl, "highlight is escaped HTML"

    from_bob = await alice.get("/search", {"q": "deploy", "from_user_id": bob.id})
    assert [m["message"]["text"] for m in from_bob["matches"]] == ["deploy fixed"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await alice.get("/search", {"q": "deploy", "after": future}))["total"] == 0
    assert (await alice.get("/search", {"q": "deploy", "before": future}))["total"] == 2
    page = await alice.get("/search", {"q": "deploy", "limit": 1, "offset": 1})
    assert page["total"] == 2 and len(page["matches"]) == 1
    await world.close()


async def test_search_never_returns_messages_of_conversations_you_are_not_in(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    secret = await alice.post(
        f"/workspaces/{world.workspace_id}/channels", {"name": "secret", "private": True}, expect=201
    )
    await alice.post(f"/conversations/{secret['id']}/members", {"user_id": bob.id}, expect=200)
    await alice.post(f"/conversations/{secret['id']}/messages", {"text": "launch codes zebra"}, expect=201)
    await eventually(lambda: bob.get("/search", {"q": "zebra"}), lambda r: r["total"] == 1)
    assert (await carol.get("/search", {"q": "zebra"}))["total"] == 0
    assert (await carol.get("/search", {"q": "zebra", "workspace_id": world.workspace_id}))["total"] == 0
    await carol.get("/search", {"q": "zebra", "conversation_id": secret["id"]}, expect=404)
    await world.close()


async def test_edits_and_deletes_reach_the_index(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    msg = await alice.post(
        f"/conversations/{world.channel_id}/messages", {"text": "original walrus"}, expect=201
    )
    await eventually(lambda: alice.get("/search", {"q": "walrus"}), lambda r: r["total"] == 1)
    await alice.http.patch(f"/api/v1/messages/{msg['id']}", json={"text": "edited narwhal"})
    await eventually(lambda: alice.get("/search", {"q": "narwhal"}), lambda r: r["total"] == 1)
    assert (await alice.get("/search", {"q": "walrus"}))["total"] == 0
    await alice.http.delete(f"/api/v1/messages/{msg['id']}")
    await eventually(lambda: alice.get("/search", {"q": "narwhal"}), lambda r: r["total"] == 0)
    await world.close()


async def test_hostile_queries_are_answered_not_crashed(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    for q in ['"', "a AND OR", "(((", "*", "-x", "NEAR(a b)", "💥", "col:x", "'; DROP TABLE messages; --"]:
        r = await alice.http.get("/api/v1/search", params={"q": q})
        assert r.status_code == 200, (q, r.text)
    r = await alice.http.get("/api/v1/search", params={"q": ""})
    assert r.status_code == 422
    await world.close()
