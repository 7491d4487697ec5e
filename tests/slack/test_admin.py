"""Tokens: the operator command prints a new bot's tokens (and user tokens) straight from the
store; owners create bots over HTTP, members cannot; revoked tokens stop working."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from slack_sdk.errors import SlackApiError

from tests.slack.conftest import SlackWorld

REPO = Path(__file__).resolve().parents[2]


async def admin(slack: SlackWorld, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m services.slack.admin`` against the running server's store."""
    settings = slack.server.parley.settings
    env = {**os.environ, "PARLEY_DATA_DIR": str(settings.data_dir), "PARLEY_LOG_LEVEL": "WARNING"}
    if settings.database_url:
        env["PARLEY_DATABASE_URL"] = settings.database_url
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.slack.admin", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_admin_command_creates_a_bot_and_prints_its_tokens(slack: SlackWorld) -> None:
    workspace = await slack.alice.get(f"/workspaces/{slack.world.workspace_id}")
    done = await admin(slack, "create-bot", "--workspace", workspace["slug"], "--name", "deploybot", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["bot_token"].startswith("xoxb-") and created["app_token"].startswith("xapp-")
    me = await slack.async_web(created["bot_token"]).auth_test()
    assert me["bot_id"] == created["bot_id"] and me["team_id"] == slack.team_id and me["user"] == "deploybot"
    opened = await slack.async_web(created["app_token"]).apps_connections_open(app_token=created["app_token"])
    assert opened["url"].startswith("ws://")

    again = await admin(slack, "create-bot", "--workspace", workspace["slug"], "--name", "deploybot")
    assert again.returncode == 1 and "username_taken" in again.stderr
    missing = await admin(slack, "create-bot", "--workspace", "no-such-workspace", "--name", "x1")
    assert missing.returncode == 1 and "workspace_not_found" in missing.stderr

    issued = await admin(
        slack, "user-token", "--workspace", workspace["slug"], "--username", slack.bob.username, "--json"
    )
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    assert (await slack.async_web(token).auth_test())["user_id"] == slack.bob_id

    revoked = await admin(slack, "revoke", created["bot_token"])
    assert json.loads(revoked.stdout) == {"revoked": True}
    try:
        await slack.async_web(created["bot_token"]).auth_test()
        raise AssertionError("a revoked token must not work")
    except SlackApiError as exc:
        assert exc.response["error"] == "invalid_auth"


async def test_only_workspace_owners_create_bots(slack: SlackWorld) -> None:
    r = await slack.bob.http.post(
        "/slack/bots", json={"workspace_id": slack.world.workspace_id, "name": "rogue"}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner"
    r = await slack.alice.http.post(
        "/slack/bots", json={"workspace_id": slack.world.workspace_id, "name": "picky", "events": ["typing"]}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_event_type"
    r = await slack.alice.http.post("/slack/tokens", json={"workspace_id": "1"})
    assert r.status_code == 404
    r = await slack.alice.http.post(
        "/slack/tokens",
        json={"workspace_id": slack.world.workspace_id},
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401


async def test_auth_revoke_ends_the_calling_token(slack: SlackWorld) -> None:
    client = slack.async_web(slack.bob_token)
    assert (await client.auth_revoke(test=True))["revoked"] is False
    assert (await client.auth_revoke())["revoked"] is True
    try:
        await client.auth_test()
        raise AssertionError("a revoked token must not work")
    except SlackApiError as exc:
        assert exc.response["error"] == "invalid_auth"
