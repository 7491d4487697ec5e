"""Bad input gets a clear 4xx JSON error and writes nothing; never a 500."""

from __future__ import annotations

import pytest

from tests.support.server import RunningServer
from tests.support.world import make_world


async def _history_texts(user, channel_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["text"] for m in (await user.get(f"/conversations/{channel_id}/messages"))["messages"]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": ""}, 422, "no_text"),
        ({"text": "   \n "}, 422, "no_text"),
        ({"text": "x" * 40_001}, 422, "msg_too_long"),
        ({"text": 42}, 422, "invalid_input"),
        ({}, 422, "invalid_input"),
        ({"text": "hi", "unexpected": 1}, 422, "invalid_input"),
        ({"text": "hi", "client_msg_id": "has spaces"}, 422, "invalid_client_msg_id"),
        ({"text": "hi", "thread_root_id": "123"}, 404, "thread_not_found"),
        ({"text": "hi", "thread_root_id": "abc"}, 422, "invalid_input"),
    ],
)
async def test_bad_message_bodies_are_refused_and_nothing_is_stored(
    server: RunningServer, body: dict[str, object], status: int, code: str
) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    r = await alice.http.post(f"/api/v1/conversations/{world.channel_id}/messages", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert await _history_texts(alice, world.channel_id) == []
    await world.close()


async def test_exactly_the_limit_is_accepted(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "é" * 40_000}, expect=201)
    await world.close()


async def test_malformed_json_and_wrong_ids_get_4xx(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    r = await alice.http.post(
        f"/api/v1/conversations/{world.channel_id}/messages",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    for path in ("/conversations/999/messages", "/conversations/abc/messages", "/conversations/-1/messages"):
        r = await alice.http.get(f"/api/v1{path}")
        assert r.status_code in (404, 422), (path, r.text)
        assert "error" in r.json()
    r = await alice.http.post("/api/v1/conversations/999/messages", json={"text": "hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "channel_not_found"
    r = await alice.http.get(f"/api/v1/conversations/{world.channel_id}/messages", params={"limit": 0})
    assert r.status_code == 422
    r = await alice.http.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    await world.close()


async def test_non_members_cannot_post_or_read(server: RunningServer) -> None:
    world = await make_world(server.url, 3)
    alice, bob, carol = world.users
    await carol.post(f"/conversations/{world.channel_id}/leave", expect=None)
    r = await carol.http.post(f"/api/v1/conversations/{world.channel_id}/messages", json={"text": "sneaky"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_in_channel"
    private = await alice.post(
        f"/workspaces/{world.workspace_id}/channels", {"name": "p", "private": True}, expect=201
    )
    r = await bob.http.post(f"/api/v1/conversations/{private['id']}/messages", json={"text": "sneaky"})
    assert r.status_code == 404
    r = await bob.http.get(f"/api/v1/conversations/{private['id']}/messages")
    assert r.status_code == 404
    assert "sneaky" not in await _history_texts(alice, world.channel_id)
    await world.close()


async def test_ids_beyond_64_bits_are_422_not_500(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    huge = str(2**64)
    r = await alice.http.get(f"/api/v1/conversations/{huge}/messages")
    assert r.status_code == 422
    r = await alice.http.post(
        f"/api/v1/conversations/{world.channel_id}/messages", json={"text": "x", "thread_root_id": huge}
    )
    assert r.status_code == 422
    await world.close()


async def test_a_client_msg_id_cannot_be_reused_in_another_conversation(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    other = await alice.post(f"/workspaces/{world.workspace_id}/channels", {"name": "other"}, expect=201)
    await alice.post(
        f"/conversations/{world.channel_id}/messages", {"text": "a", "client_msg_id": "dup"}, expect=201
    )
    r = await alice.http.post(
        f"/api/v1/conversations/{other['id']}/messages", json={"text": "b", "client_msg_id": "dup"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_client_msg_id"
    await world.close()
