"""``users.list`` and ``users.info``: the members of the token's workspace."""

from __future__ import annotations

from typing import Any

from parley.domain.actions import bots
from services.slack import ids
from services.slack.errors import SlackError
from services.slack.registry import Args, Ctx, decode_int_cursor, encode_cursor, page_metadata, slack_method
from services.slack.shapes import user_obj

_MAX_LIST = 1000


@slack_method("users.list")
async def users_list(ctx: Ctx, args: Args) -> dict[str, Any]:
    limit = args.number("limit", _MAX_LIST, low=0, high=_MAX_LIST, error="invalid_limit") or _MAX_LIST
    after = decode_int_cursor(args.text("cursor"), "users") or 0
    entries = sorted(await bots.directory(ctx.deps, ctx.user, ctx.workspace_id), key=lambda e: e.user.id)
    rest = [e for e in entries if e.user.id > after]
    page = rest[:limit]
    next_cursor = encode_cursor("users", page[-1].user.id) if len(rest) > limit else None
    return {
        "members": [user_obj(e.user, e.role, e.bot, ctx.caller.workspace) for e in page],
        "cache_ts": 0,
        **page_metadata(next_cursor),
    }


@slack_method("users.info")
async def users_info(ctx: Ctx, args: Args) -> dict[str, Any]:
    user_id = ids.parse_user(args.required("user", error="user_not_found"))
    if user_id is None:
        raise SlackError("user_not_found")
    entry = await bots.directory_entry(ctx.deps, ctx.user, ctx.workspace_id, user_id)
    return {"user": user_obj(entry.user, entry.role, entry.bot, ctx.caller.workspace)}
