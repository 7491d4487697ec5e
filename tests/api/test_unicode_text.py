"""Message text that JSON can carry but UTF-8 cannot: a lone surrogate escape ("\\ud800").

It used to reach the store and fail the whole write batch (503 store_unavailable on a send, 500 on
an edit); it is bad input, refused with a 422 before anything is written.
"""

from __future__ import annotations

import pytest

from tests.support.server import RunningServer
from tests.support.world import make_world


@pytest.mark.parametrize("body", [rb'{"text": "\ud800"}', rb'{"text": "x\ud800y"}', rb'{"text": "\udfff"}'])
async def test_a_lone_surrogate_in_message_text_is_a_4xx_and_stores_nothing(
    server: RunningServer, body: bytes
) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    url = f"/api/v1/conversations/{world.channel_id}/messages"
    r = await alice.http.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_text"
    page = await alice.get(f"/conversations/{world.channel_id}/messages")
    assert page["messages"] == []
    await world.close()


async def test_a_lone_surrogate_in_an_edit_is_a_4xx_and_leaves_the_message_alone(
    server: RunningServer,
) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    sent = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "original"}, expect=201)
    r = await alice.http.patch(
        f"/api/v1/messages/{sent['id']}",
        content=b'{"text": "ed\\ud800it"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_text"
    assert (await alice.get(f"/messages/{sent['id']}"))["text"] == "original"
    await world.close()


async def test_text_beyond_the_bmp_is_stored_as_sent(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    text = "sushi 🍣, beer 🍺, and a flag 🇫🇷"
    sent = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": text}, expect=201)
    assert (await alice.get(f"/messages/{sent['id']}"))["text"] == text
    await world.close()
