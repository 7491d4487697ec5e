"""``auth.test``, ``auth.revoke`` and ``api.test`` (the one method that needs no token)."""

from __future__ import annotations

from typing import Any

from parley.domain.actions import api_tokens
from services.slack import ids
from services.slack.errors import SlackError
from services.slack.registry import USER_OR_BOT, Args, Ctx, slack_method


@slack_method("auth.test", tokens=USER_OR_BOT)
async def auth_test(ctx: Ctx, args: Args) -> dict[str, Any]:
    result: dict[str, Any] = {
        "url": ctx.base_url,
        "team": ctx.caller.workspace.name,
        "user": ctx.user.username,
        "team_id": ctx.team_id,
        "user_id": ids.user_id(ctx.user.id),
        "is_enterprise_install": False,
    }
    if ctx.caller.bot is not None:
        result["bot_id"] = ids.bot_id(ctx.caller.bot.user_id)
    return result


@slack_method("auth.revoke", tokens=USER_OR_BOT)
async def auth_revoke(ctx: Ctx, args: Args) -> dict[str, Any]:
    """Revoke the calling token (``test=true`` only checks that it could be revoked)."""
    if args.flag("test"):
        return {"revoked": False}
    await api_tokens.revoke_api_token(ctx.deps, ctx.token)
    return {"revoked": True}


def api_test(args: Args) -> dict[str, Any]:
    """Echo the arguments; an ``error`` argument makes the call fail with that error."""
    error = args.text("error")
    if error:
        raise SlackError(error, args={k: v for k, v in args.values.items() if k != "token"})
    return {"args": {k: v for k, v in args.values.items() if k != "token"}}
