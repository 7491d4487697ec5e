"""``apps.connections.open``: a Socket Mode URL for an app-level token."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from parley.domain.actions import api_tokens
from services.slack import ids
from services.slack.registry import APP_ONLY, Args, Ctx, slack_method

SOCKET_PATH = "/slack/socket"


def socket_url(base_url: str, ticket: str, app_id: str) -> str:
    """``ws://`` for an ``http://`` base, ``wss://`` for ``https://`` (Slack's own is wss).

    ``app`` is there for the load balancer, not the server: hashing on it sends every socket
    of one app to the same node, where its Socket Mode session (and its undelivered events)
    lives."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    return urlunsplit((scheme, parts.netloc, SOCKET_PATH, f"app={app_id}&ticket={ticket}", ""))


@slack_method("apps.connections.open", tokens=APP_ONLY)
async def apps_connections_open(ctx: Ctx, args: Args) -> dict[str, Any]:
    ticket = api_tokens.socket_ticket(ctx.deps, ctx.caller)
    return {"url": socket_url(ctx.base_url, ticket, ids.app_id(ctx.user.id))}
