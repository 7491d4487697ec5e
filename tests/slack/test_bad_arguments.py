"""Web API arguments that used to reach an unhandled exception (``internal_error``, a traceback
in the log) instead of Slack's answer for them."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.slack.conftest import SlackWorld


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
