"""Messages over REST: send, history, edit, delete, threads, reactions, mentions, unreads."""

from __future__ import annotations

from tests.support.server import RunningServer
from tests.support.world import make_world


async def test_history_pages_backwards_and_forwards_by_seq(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice = world.users[0]
    sent = [
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"m{i}"}, expect=201)
        for i in range(7)
    ]
    page = await alice.get(f"/conversations/{world.channel_id}/messages", {"limit": 3})
    assert [m["text"] for m in page["messages"]] == ["m6", "m5", "m4"] and page["has_more"]
    older = await alice.get(
        f"/conversations/{world.channel_id}/messages", {"limit": 3, "before": page["messages"][-1]["seq"]}
    )
    assert [m["text"] for m in older["messages"]] == ["m3", "m2", "m1"]
    newer = await alice.get(f"/conversations/{world.channel_id}/messages", {"after": sent[4]["seq"]})
    assert [m["text"] for m in newer["messages"]] == ["m5", "m6"] and not newer["has_more"]
    seqs = [m["seq"] for m in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 7)), "seq is gap-free while only messages are sent"
    await world.close()


async def test_history_shows_an_acknowledged_send_before_the_cache_has_caught_up(
    server: RunningServer,
) -> None:
    """The recent-history cache is fed by a consumer that runs behind the commit; with that
    consumer stopped, the cache is as far behind as it can be, and the first page must come
    from the store instead of leaving out what was just sent or edited."""
    world = await make_world(server.url)
    alice, bob = world.users
    path = f"/conversations/{world.channel_id}/messages"

    async def first_page() -> list[str]:
        # 20 < the cache's 50 messages: a page the cache may answer
        return [m["text"] for m in (await bob.get(path, {"limit": 20}))["messages"]]

    first = await alice.post(path, {"text": "first"}, expect=201)
    assert await first_page() == ["first"]  # and the cache is filled
    [cache_consumer] = [r for r in server.app.state.runners if r.group == "cache"]
    await cache_consumer.stop()
    await alice.post(path, {"text": "second"}, expect=201)
    assert await first_page() == ["second", "first"]
    r = await alice.http.patch(f"/api/v1/messages/{first['id']}", json={"text": "first, edited"})
    assert r.status_code == 200
    assert await first_page() == ["second", "first, edited"]
    await world.close()


async def test_only_the_author_edits_and_the_edit_is_visible(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    msg = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "helo"}, expect=201)
    r = await bob.http.patch(f"/api/v1/messages/{msg['id']}", json={"text": "hacked"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "cant_update_message"
    r = await alice.http.patch(f"/api/v1/messages/{msg['id']}", json={"text": "hello"})
    assert r.status_code == 200 and r.json()["edited_at"]
    assert (await bob.get(f"/messages/{msg['id']}"))["text"] == "hello"
    r = await bob.http.delete(f"/api/v1/messages/{msg['id']}")
    assert r.status_code == 403
    r = await alice.http.delete(f"/api/v1/messages/{msg['id']}")
    assert r.status_code == 200
    fetched = await bob.get(f"/messages/{msg['id']}")
    assert fetched["deleted"] and fetched["text"] == ""
    await world.close()


async def test_thread_replies_count_and_list(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    root = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "question?"}, expect=201)
    for text in ("a1", "a2"):
        await bob.post(
            f"/conversations/{world.channel_id}/messages",
            {"text": text, "thread_root_id": root["id"]},
            expect=201,
        )
    thread = await alice.get(f"/messages/{root['id']}/replies")
    assert thread["root"]["reply_count"] == 2
    assert [m["text"] for m in thread["replies"]] == ["a1", "a2"]
    top = await alice.get(f"/conversations/{world.channel_id}/messages")
    assert [m["text"] for m in top["messages"]] == ["question?"], "replies stay out of the channel's history"
    reply_id = thread["replies"][0]["id"]
    r = await bob.post(
        f"/conversations/{world.channel_id}/messages", {"text": "nested", "thread_root_id": reply_id}
    )
    assert r["error"]["code"] == "not_a_thread_root"
    await world.close()


async def test_reactions_toggle_once_per_user_and_emoji(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    msg = await alice.post(f"/conversations/{world.channel_id}/messages", {"text": "ship it"}, expect=201)
    assert (
        await bob.http.post(f"/api/v1/messages/{msg['id']}/reactions", json={"emoji": ":rocket:"})
    ).status_code == 204
    again = await bob.http.post(f"/api/v1/messages/{msg['id']}/reactions", json={"emoji": "rocket"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reacted"
    await alice.post(f"/messages/{msg['id']}/reactions", {"emoji": "rocket"}, expect=204)
    reactions = (await alice.get(f"/messages/{msg['id']}"))["reactions"]
    assert reactions == [{"emoji": "rocket", "user_ids": [bob.id, alice.id], "count": 2}]
    assert (await bob.http.delete(f"/api/v1/messages/{msg['id']}/reactions/rocket")).status_code == 204
    assert (await bob.http.delete(f"/api/v1/messages/{msg['id']}/reactions/rocket")).status_code == 404
    assert (await alice.get(f"/messages/{msg['id']}"))["reactions"][0]["count"] == 1
    await world.close()


async def test_mentions_are_parsed_into_the_message(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    msg = await alice.post(
        f"/conversations/{world.channel_id}/messages",
        {"text": f"hey @{bob.username} and @nobody-here, @channel ping; mail me at x@{bob.username}"},
        expect=201,
    )
    assert msg["mentions"] == [bob.id]
    assert msg["mentions_channel"] is True
    await world.close()


async def test_unread_counts_follow_read_markers(server: RunningServer) -> None:
    world = await make_world(server.url)
    alice, bob = world.users
    sent = [
        await alice.post(f"/conversations/{world.channel_id}/messages", {"text": f"n{i}"}, expect=201)
        for i in range(3)
    ]
    conv = await bob.get(f"/conversations/{world.channel_id}")
    assert conv["unread_count"] == 3
    assert (await alice.get(f"/conversations/{world.channel_id}"))["unread_count"] == 0, (
        "own messages are read"
    )
    marker = await bob.post(f"/conversations/{world.channel_id}/read", {"seq": sent[1]["seq"]})
    assert marker["last_read_seq"] == sent[1]["seq"]
    assert (await bob.get(f"/conversations/{world.channel_id}"))["unread_count"] == 1
    await bob.post(f"/conversations/{world.channel_id}/read", {"seq": 1})
    assert (await bob.get(f"/conversations/{world.channel_id}"))["unread_count"] == 1, (
        "markers never move back"
    )
    listed = await bob.get(f"/workspaces/{world.workspace_id}/conversations")
    assert next(c for c in listed if c["conversation"]["id"] == world.channel_id)["unread_count"] == 1
    await world.close()
