"""Slack's Web API methods through the real ``slack_sdk`` clients (``WebClient`` in a worker
thread, because the server runs in the test's event loop; ``AsyncWebClient`` directly), with
Slack's argument names, result shapes, cursors and error codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

from services.slack.settings import SlackSettings
from tests.slack.conftest import SlackWorld
from tests.support.wait import eventually


async def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


async def test_auth_test_names_the_user_or_the_bot_behind_a_token(slack: SlackWorld) -> None:
    user = await asyncio.to_thread(slack.web(slack.alice_token).auth_test)
    assert user["ok"] and user["user"] == slack.alice.username and user["team_id"] == slack.team_id
    assert user["user_id"].startswith("U") and "bot_id" not in user
    assert user["url"] == f"{slack.server.url}/"
    bot = await asyncio.to_thread(slack.web(slack.bot["bot_token"]).auth_test)
    assert bot["user_id"] == slack.bot["bot_user_id"] and bot["bot_id"] == slack.bot["bot_id"]
    assert bot["team_id"] == slack.team_id


async def test_channels_are_created_listed_joined_described_and_membered(slack: SlackWorld) -> None:
    alice, bot = slack.async_web(slack.alice_token), slack.async_web(slack.bot["bot_token"])
    public = (await alice.conversations_create(name="launch"))["channel"]
    private = (await alice.conversations_create(name="secret-plans", is_private=True))["channel"]
    assert public["id"].startswith("C") and public["name"] == "launch" and not public["is_private"]
    assert private["is_private"] and private["is_member"]

    listed = await bot.conversations_list()
    by_name = {c["name"]: c for c in listed["channels"]}
    assert {"general", "launch"} <= by_name.keys() and "secret-plans" not in by_name
    assert not by_name["launch"]["is_member"]
    mine = await alice.conversations_list(types="public_channel,private_channel")
    assert "secret-plans" in {c["name"] for c in mine["channels"]}

    joined = await bot.conversations_join(channel=public["id"])
    assert joined["channel"]["id"] == public["id"] and "warning" not in joined
    again = await bot.conversations_join(channel=public["id"])
    assert again["warning"] == "already_in_channel"

    info = await bot.conversations_info(channel=public["id"], include_num_members=True)
    assert info["channel"]["is_member"] and info["channel"]["num_members"] == 2
    assert info["channel"]["creator"] == slack.alice_id

    members = await alice.conversations_members(channel=public["id"])
    assert set(members["members"]) == {slack.alice_id, slack.bot["bot_user_id"]}

    bob = slack.async_web(slack.bob_token)
    assert "secret-plans" not in {
        c["name"] for c in (await bob.conversations_list(types="private_channel"))["channels"]
    }
    await alice.conversations_invite(channel=private["id"], users=[slack.bob_id])
    bobs = await bob.conversations_list(types="private_channel")
    assert [c["id"] for c in bobs["channels"]] == [private["id"]] and bobs["channels"][0]["is_member"]


async def test_cursor_pagination_walks_every_page_once(slack: SlackWorld) -> None:
    alice = slack.async_web(slack.alice_token)
    for i in range(4):
        await alice.conversations_create(name=f"page-{i}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await alice.conversations_list(limit=2, cursor=cursor)
        pages += 1
        seen += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and sorted(seen) == sorted(["general", "page-0", "page-1", "page-2", "page-3"])
    assert len(seen) == len(set(seen))
    # The SDK's own iterator follows next_cursor the same way.
    names = [c["name"] async for page in await alice.conversations_list(limit=2) for c in page["channels"]]
    assert sorted(names) == sorted(seen)
    error = await slack_error(alice.conversations_list(cursor="bm90LWEtY3Vyc29y"))
    assert error.response["error"] == "invalid_cursor"


async def test_post_reply_update_delete_read_back_with_the_sync_client(slack: SlackWorld) -> None:
    alice, bob = slack.web(slack.alice_token), slack.web(slack.bob_token)

    def conversation() -> dict[str, Any]:
        root = alice.chat_postMessage(channel=slack.channel, text=f"hi <@{slack.bob_id}> & co")
        reply = bob.chat_postMessage(channel=slack.channel, text="reply one", thread_ts=root["ts"])
        # A reply to a reply lands in the same thread, as in Slack.
        nested = alice.chat_postMessage(channel=slack.channel, text="reply two", thread_ts=reply["ts"])
        updated = alice.chat_update(channel=slack.channel, ts=root["ts"], text=f"hello <@{slack.bob_id}>")
        extra = alice.chat_postMessage(channel=slack.channel, text="to be deleted")
        deleted = alice.chat_delete(channel=slack.channel, ts=extra["ts"])
        history = bob.conversations_history(channel=slack.channel)
        replies = bob.conversations_replies(channel=slack.channel, ts=root["ts"])
        return {
            "root": root,
            "reply": reply,
            "nested": nested,
            "updated": updated,
            "deleted": deleted,
            "extra": extra,
            "history": history,
            "replies": replies,
        }

    r = await asyncio.to_thread(conversation)
    root, reply, nested = r["root"], r["reply"], r["nested"]
    assert root["channel"] == slack.channel and root["message"]["user"] == slack.alice_id
    assert root["message"]["text"] == f"hi <@{slack.bob_id}> &amp; co"
    assert float(root["ts"]) < float(reply["ts"]) < float(nested["ts"])
    assert reply["message"]["thread_ts"] == root["ts"] and nested["message"]["thread_ts"] == root["ts"]
    assert r["updated"]["ts"] == root["ts"] and r["updated"]["text"] == f"hello <@{slack.bob_id}>"
    assert r["updated"]["message"]["edited"]["user"] == slack.alice_id
    assert r["deleted"]["ts"] == r["extra"]["ts"]

    top = r["history"]["messages"]
    assert [m["ts"] for m in top] == [root["ts"]], "replies and deleted messages are not top-level history"
    assert top[0]["reply_count"] == 2 and top[0]["thread_ts"] == root["ts"]
    thread = r["replies"]["messages"]
    assert [m["text"] for m in thread] == [f"hello <@{slack.bob_id}>", "reply one", "reply two"]
    assert thread[1]["parent_user_id"] == slack.alice_id


async def test_history_pages_by_cursor_and_by_oldest_and_latest(slack: SlackWorld) -> None:
    alice = slack.async_web(slack.alice_token)
    sent = [(await alice.chat_postMessage(channel=slack.channel, text=f"m{i}"))["ts"] for i in range(7)]
    assert sent == sorted(sent, key=float), "ts increase within a channel"

    first = await alice.conversations_history(channel=slack.channel, limit=3)
    assert [m["text"] for m in first["messages"]] == ["m6", "m5", "m4"] and first["has_more"]
    second = await alice.conversations_history(
        channel=slack.channel, limit=3, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in second["messages"]] == ["m3", "m2", "m1"]

    # Polling for news: everything after the last ts seen, newest first, nothing skipped.
    newer = await alice.conversations_history(channel=slack.channel, oldest=sent[3], limit=2)
    assert [m["text"] for m in newer["messages"]] == ["m5", "m4"] and newer["has_more"]
    rest = await alice.conversations_history(
        channel=slack.channel, oldest=sent[3], limit=2, cursor=newer["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["m6"] and not rest["has_more"]

    window = await alice.conversations_history(
        channel=slack.channel, oldest=sent[1], latest=sent[4], inclusive=True
    )
    assert [m["text"] for m in window["messages"]] == ["m4", "m3", "m2", "m1"]
    exclusive = await alice.conversations_history(channel=slack.channel, oldest=sent[1], latest=sent[4])
    assert [m["text"] for m in exclusive["messages"]] == ["m3", "m2"]


async def test_reactions_are_added_listed_and_removed(slack: SlackWorld) -> None:
    alice, bob = slack.async_web(slack.alice_token), slack.async_web(slack.bob_token)
    posted = await alice.chat_postMessage(channel=slack.channel, text="react to me")
    await bob.reactions_add(channel=slack.channel, name="thumbsup", timestamp=posted["ts"])
    await alice.reactions_add(channel=slack.channel, name=":thumbsup:", timestamp=posted["ts"])
    history = await alice.conversations_history(channel=slack.channel, limit=1)
    reactions = history["messages"][0]["reactions"]
    assert reactions == [{"name": "thumbsup", "users": [slack.bob_id, slack.alice_id], "count": 2}]
    await bob.reactions_remove(channel=slack.channel, name="thumbsup", timestamp=posted["ts"])
    # The first history page comes from Parley's history cache, refreshed a moment after writes.
    await eventually(
        lambda: alice.conversations_history(channel=slack.channel, limit=1),
        lambda h: h["messages"][0]["reactions"][0]["users"] == [slack.alice_id],
    )


async def test_users_are_listed_and_described_with_bots_marked(slack: SlackWorld) -> None:
    bot = slack.web(slack.bot["bot_token"])
    listed = await asyncio.to_thread(bot.users_list)
    by_id = {u["id"]: u for u in listed["members"]}
    assert set(by_id) == {slack.alice_id, slack.bob_id, slack.bot["bot_user_id"]}
    assert by_id[slack.alice_id]["is_owner"] and by_id[slack.alice_id]["is_primary_owner"]
    assert not by_id[slack.bob_id]["is_admin"] and not by_id[slack.bob_id]["is_bot"]
    assert by_id[slack.bot["bot_user_id"]]["is_bot"]
    assert by_id[slack.bot["bot_user_id"]]["profile"]["bot_id"] == slack.bot["bot_id"]
    paged = await asyncio.to_thread(bot.users_list, limit=2)
    assert len(paged["members"]) == 2 and paged["response_metadata"]["next_cursor"]
    info = await asyncio.to_thread(bot.users_info, user=slack.bob_id)
    assert info["user"]["name"] == slack.bob.username and info["user"]["team_id"] == slack.team_id


async def test_search_finds_what_the_user_may_read_with_highlights(slack: SlackWorld) -> None:
    alice = slack.async_web(slack.alice_token)
    await alice.chat_postMessage(channel=slack.channel, text="the quarterly zeppelin report")
    secret = (await alice.conversations_create(name="vault", is_private=True))["channel"]
    await alice.chat_postMessage(channel=secret["id"], text="the secret zeppelin plans")
    bob = slack.async_web(slack.bob_token)

    found = await eventually(
        lambda: bob.search_messages(query="zeppelin"), lambda r: r["messages"]["total"] >= 1, timeout=15
    )
    matches = found["messages"]["matches"]
    assert [m["text"] for m in matches] == ["the quarterly zeppelin report"], "private channels stay private"
    assert matches[0]["channel"]["id"] == slack.channel and matches[0]["username"] == slack.alice.username
    assert found["messages"]["paging"]["page"] == 1 and found["messages"]["pagination"]["total_count"] == 1

    mine = await eventually(
        lambda: alice.search_messages(query="zeppelin in:#vault", highlight=True),
        lambda r: r["messages"]["total"] >= 1,
        timeout=15,
    )
    assert mine["messages"]["matches"][0]["text"] == "the secret \ue000zeppelin\ue001 plans"


async def test_errors_use_slack_codes(slack: SlackWorld) -> None:
    alice, bob = slack.async_web(slack.alice_token), slack.async_web(slack.bob_token)
    bot = slack.async_web(slack.bot["bot_token"])
    posted = await alice.chat_postMessage(channel=slack.channel, text="mine")

    async def code(call: Any) -> str:
        error = await slack_error(call)
        assert error.response.status_code == 200, "Slack errors are HTTP 200"
        assert error.response["ok"] is False
        return str(error.response["error"])

    assert await code(alice.chat_postMessage(channel="C0NOTREAL", text="x")) == "channel_not_found"
    assert await code(alice.conversations_info(channel="D" + slack.channel[1:])) == "channel_not_found"
    vault = (await alice.conversations_create(name="vault", is_private=True))["channel"]
    assert await code(bob.conversations_history(channel=vault["id"])) == "channel_not_found"
    assert await code(bob.conversations_join(channel=vault["id"])) == "channel_not_found"
    assert await code(bot.chat_postMessage(channel=slack.channel, text="hi")) == "not_in_channel"
    assert await code(alice.conversations_create(name="general")) == "name_taken"
    assert await code(alice.conversations_create(name="Bad Name!")) == "invalid_name"
    await bob.reactions_add(channel=slack.channel, name="tada", timestamp=posted["ts"])
    assert (
        await code(bob.reactions_add(channel=slack.channel, name="tada", timestamp=posted["ts"]))
        == "already_reacted"
    )
    assert (
        await code(bob.reactions_remove(channel=slack.channel, name="eyes", timestamp=posted["ts"]))
        == "no_reaction"
    )
    assert (
        await code(bob.chat_update(channel=slack.channel, ts=posted["ts"], text="hacked"))
        == "cant_update_message"
    )
    assert await code(bob.chat_delete(channel=slack.channel, ts=posted["ts"])) == "cant_delete_message"
    assert (
        await code(alice.chat_update(channel=slack.channel, ts="1.000001", text="x")) == "message_not_found"
    )
    await alice.chat_delete(channel=slack.channel, ts=posted["ts"])
    assert (
        await code(alice.chat_update(channel=slack.channel, ts=posted["ts"], text="x")) == "message_not_found"
    )
    assert await code(alice.chat_postMessage(channel=slack.channel, text="")) == "no_text"
    assert await code(alice.users_info(user="U0NOBODY")) == "user_not_found"
    assert await code(slack.async_web("xoxp-not-a-real-token").auth_test()) == "invalid_auth"
    assert await code(slack.async_web(None).auth_test()) == "not_authed"
    assert await code(
        slack.async_web(slack.bot["app_token"]).chat_postMessage(channel=slack.channel, text="x")
    ) == ("not_allowed_token_type")
    assert await code(bot.search_messages(query="x")) == "not_allowed_token_type"
    assert await code(alice.apps_connections_open(app_token=slack.alice_token)) == "not_allowed_token_type"
    assert await code(alice.api_call("chat.fly")) == "unknown_method"


async def test_arguments_arrive_by_query_form_or_json_and_the_token_by_header_or_argument(
    slack: SlackWorld,
) -> None:
    alice = slack.async_web(slack.alice_token)
    by_query = await alice.api_call(
        "chat.postMessage", http_verb="GET", params={"channel": slack.channel, "text": "q"}
    )
    by_form = await alice.api_call("chat.postMessage", data={"channel": slack.channel, "text": "f"})
    by_json = await alice.api_call("chat.postMessage", json={"channel": slack.channel, "text": "j"})
    assert [r["message"]["text"] for r in (by_query, by_form, by_json)] == ["q", "f", "j"]
    # No Authorization header: the token travels as a form argument.
    anonymous = slack.async_web(None)
    me = await anonymous.api_call("auth.test", data={"token": slack.alice_token})
    assert me["user_id"] == slack.alice_id
    echoed = await anonymous.api_test(foo="bar")
    assert echoed["args"] == {"foo": "bar"}
    error = await slack_error(anonymous.api_test(error="my_error"))
    assert error.response["error"] == "my_error"


async def test_rate_limits_answer_429_with_retry_after(slack: SlackWorld) -> None:
    slack.server.app.state.slack_settings = SlackSettings(rate_per_second=1.0, rate_burst=2)
    alice = slack.async_web(slack.alice_token)
    await alice.auth_test()
    await alice.auth_test()
    error = await slack_error(alice.auth_test())
    assert error.response.status_code == 429 and error.response["error"] == "ratelimited"
    assert int(error.response.headers["Retry-After"]) >= 1
    # The SDK's own retry handler waits as told and then succeeds.
    patient = slack.async_web(slack.alice_token)
    patient.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    assert (await patient.auth_test())["ok"]
