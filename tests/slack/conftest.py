"""A Slack-flavoured world on a running Parley: two Parley users (alice owns the workspace,
bob is a member) sharing ``#general``, each with a user token (xoxp), and a bot with its bot
token (xoxb) and app-level token (xapp), all obtained the way a user would (Parley login, then
``/slack/tokens`` and ``/slack/bots``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.clients import ApiUser
from tests.support.server import RunningServer
from tests.support.world import World, make_world

_bots = itertools.count()


@dataclass
class SlackWorld:
    server: RunningServer
    world: World
    alice_token: str
    bob_token: str
    bot: dict[str, Any]  # bot_user_id, bot_id, app_id, team_id, bot_token, app_token
    channel: str  # #general's Slack id
    team_id: str
    alice_id: str  # Slack user ids
    bob_id: str

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/api/"

    @property
    def alice(self) -> ApiUser:
        return self.world.users[0]

    @property
    def bob(self) -> ApiUser:
        return self.world.users[1]

    def web(self, token: str | None) -> WebClient:
        return WebClient(token=token, base_url=self.api_url, timeout=15)

    def async_web(self, token: str | None) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=self.api_url, timeout=15)

    async def new_bot(self, events: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"workspace_id": self.world.workspace_id, "name": f"bot{next(_bots)}x"}
        if events is not None:
            body["events"] = events
        r = await self.alice.http.post("/slack/bots", json=body)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created


async def user_token(user: ApiUser, workspace_id: str) -> str:
    r = await user.http.post("/slack/tokens", json={"workspace_id": workspace_id})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@pytest.fixture
async def slack(server: RunningServer) -> AsyncIterator[SlackWorld]:
    world = await make_world(server.url)
    alice, bob = world.users
    alice_token = await user_token(alice, world.workspace_id)
    bob_token = await user_token(bob, world.workspace_id)
    r = await alice.http.post(
        "/slack/bots", json={"workspace_id": world.workspace_id, "name": f"helper{next(_bots)}"}
    )
    assert r.status_code == 201, r.text
    bot = r.json()
    me = await AsyncWebClient(token=alice_token, base_url=f"{server.url}/api/").auth_test()
    bob_me = await AsyncWebClient(token=bob_token, base_url=f"{server.url}/api/").auth_test()
    channels = await AsyncWebClient(token=alice_token, base_url=f"{server.url}/api/").conversations_list()
    general = next(c["id"] for c in channels["channels"] if c["name"] == "general")
    yield SlackWorld(
        server=server,
        world=world,
        alice_token=alice_token,
        bob_token=bob_token,
        bot=bot,
        channel=general,
        team_id=me["team_id"],
        alice_id=me["user_id"],
        bob_id=bob_me["user_id"],
    )
    await world.close()
