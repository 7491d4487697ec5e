"""Web API arguments that used to reach an unhandled exception (``internal_error``, a traceback
in the log) instead of Slack's answer for them."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.slack.conftest import SlackWorld
from tests.support.wait import eventually


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


async def _call(slack: SlackWorld, method: str, token: str, **args: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=slack.api_url, timeout=15) as http:
        r = await http.post(method, data=args, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("conversations.history", "history:b\u00b2"),  # "²".isdigit() is true; int("²") raises
        ("conversations.history", "history:b" + "9" * 30),  # past 2**63: the store overflows
        ("conversations.history", "history:a" + "9" * 30),
        ("conversations.replies", "replies:\u00b2"),
        ("conversations.replies", "replies:" + "9" * 30),
        ("conversations.list", "conversations:\u00b2"),
        ("conversations.list", "conversations:" + "9" * 5000),  # past int()'s digit limit
        ("conversations.members", "members:\u00b2"),
        ("users.list", "users:\u00b2"),
    ],
)
async def test_garbage_cursors_are_invalid_cursor(slack: SlackWorld, method: str, raw: str) -> None:
    posted = await _call(slack, "chat.postMessage", slack.alice_token, channel=slack.channel, text="root")
    args: dict[str, Any] = {"cursor": _cursor(raw)}
    if method.startswith("conversations.") and method != "conversations.list":
        args["channel"] = slack.channel
    if method == "conversations.replies":
        args["ts"] = posted["ts"]
    assert await _call(slack, method, slack.alice_token, **args) == {"ok": False, "error": "invalid_cursor"}


@pytest.mark.parametrize(
    ("method", "bound"),
    [
        ("conversations.history", "latest"),
        ("conversations.history", "oldest"),
        ("conversations.replies", "oldest"),
    ],
)
async def test_far_future_history_bounds_are_answered(slack: SlackWorld, method: str, bound: str) -> None:
    posted = await _call(slack, "chat.postMessage", slack.alice_token, channel=slack.channel, text="hello")
    # Within the ts pattern (up to 15 digits), but (value - base) * 10**6 passes 2**63.
    args: dict[str, Any] = {"channel": slack.channel, bound: "999999999999999"}
    if method == "conversations.replies":
        args["ts"] = posted["ts"]
    body = await _call(slack, method, slack.alice_token, **args)
    assert body["ok"], body
    texts = [message["text"] for message in body["messages"]]
    # latest far ahead: everything so far; oldest far ahead: nothing after it (replies: the root only).
    assert ("hello" in texts) == (bound == "latest" or method == "conversations.replies")


async def test_deeply_nested_blocks_are_invalid_blocks(slack: SlackWorld) -> None:
    blocks = "[" * 600 + "]" * 600  # valid JSON (orjson takes 1,024 levels)
    body = await _call(slack, "chat.postMessage", slack.alice_token, channel=slack.channel, blocks=blocks)
    assert body == {"ok": False, "error": "invalid_blocks"}


async def test_searching_in_a_dm_that_does_not_exist_finds_nothing_and_creates_nothing(
    slack: SlackWorld,
) -> None:
    before = await slack.bob.get(f"/workspaces/{slack.world.workspace_id}/conversations")
    body = await _call(slack, "search.messages", slack.alice_token, query=f"in:<@{slack.bob_id}> hello")
    assert body["ok"], body
    assert body["messages"]["matches"] == []
    # A search is a read: no DM appeared for bob (nor for alice).
    after = await slack.bob.get(f"/workspaces/{slack.world.workspace_id}/conversations")
    assert [c["conversation"]["id"] for c in after] == [c["conversation"]["id"] for c in before]


async def test_searching_in_an_existing_dm_searches_that_dm_only(slack: SlackWorld) -> None:
    alice = slack.async_web(slack.alice_token)
    dm = (await alice.conversations_open(users=slack.bob_id))["channel"]["id"]
    await alice.chat_postMessage(channel=dm, text="the zebra is in the dm")
    await alice.chat_postMessage(channel=slack.channel, text="the zebra is in general")
    found = await eventually(
        lambda: alice.search_messages(query=f"in:<@{slack.bob_id}> zebra"),
        lambda r: r["messages"]["total"] >= 1,
        timeout=15,
    )
    assert [m["text"] for m in found["messages"]["matches"]] == ["the zebra is in the dm"]
