"""Messages cross the facade both ways: what a Slack client posts is an ordinary Parley message
(stored, streamed on Parley's WebSocket, searchable through Parley's REST API), and what a
Parley client posts reads through the Slack API, mentions and all."""

from __future__ import annotations

from services.slack import ids
from tests.slack.conftest import SlackWorld
from tests.support.clients import WsClient
from tests.support.wait import eventually


async def test_a_slack_post_is_a_parley_message_everywhere(slack: SlackWorld) -> None:
    bob_ws = await WsClient.connect(slack.server.ws_url, slack.bob.token)
    await bob_ws.wait_for(lambda f: f.get("type") == "hello")
    bot = slack.async_web(slack.bot["bot_token"])
    await bot.conversations_join(channel=slack.channel)
    posted = await bot.chat_postMessage(channel=slack.channel, text=f"deploy done <@{slack.bob_id}> &lt;3")

    frame = await bob_ws.wait_for(
        lambda f: f.get("type") == "message.created" and f["data"]["message"]["text"].startswith("deploy"),
        timeout=15,
    )
    message = frame["data"]["message"]
    assert message["text"] == f"deploy done @{slack.bob.username} <3"
    assert message["mentions"] == [slack.bob.id], "a Slack <@U…> mention is a Parley mention"
    assert message["user_id"] == str(ids.parse_user(slack.bot["bot_user_id"]))
    history = await slack.bob.get(f"/conversations/{slack.world.channel_id}/messages")
    assert history["messages"][0]["id"] == message["id"]
    found = await eventually(
        lambda: slack.bob.get("/search", {"q": "deploy"}), lambda r: r["total"] >= 1, timeout=15
    )
    assert found["matches"][0]["message"]["id"] == message["id"]
    # Read back through the Slack API, the message is the one that was posted.
    read = await slack.async_web(slack.bob_token).conversations_history(channel=slack.channel, limit=1)
    assert read["messages"][0]["ts"] == posted["ts"]
    assert read["messages"][0]["text"] == f"deploy done <@{slack.bob_id}> &lt;3"
    assert read["messages"][0]["bot_id"] == slack.bot["bot_id"]
    await bob_ws.close()


async def test_a_parley_post_reads_through_the_slack_api(slack: SlackWorld) -> None:
    sent = await slack.alice.post(
        f"/conversations/{slack.world.channel_id}/messages",
        {"text": "ping @" + slack.bob.username + " & @here"},
        expect=201,
    )
    await slack.bob.post(f"/messages/{sent['id']}/reactions", {"emoji": "eyes"}, expect=204)
    bob = slack.async_web(slack.bob_token)
    history = await eventually(
        lambda: bob.conversations_history(channel=slack.channel, limit=1),
        lambda h: "reactions" in h["messages"][0],
    )
    message = history["messages"][0]
    assert message["text"] == f"ping <@{slack.bob_id}> &amp; <!here>"
    assert message["user"] == slack.alice_id and "bot_id" not in message
    assert message["reactions"] == [{"name": "eyes", "users": [slack.bob_id], "count": 1}]
    # The ts names the message: a Slack reply threads under the Parley message.
    await bob.chat_postMessage(channel=slack.channel, text="pong", thread_ts=message["ts"])
    thread = await slack.alice.get(f"/messages/{sent['id']}/replies")
    assert [m["text"] for m in thread["replies"]] == ["pong"]
