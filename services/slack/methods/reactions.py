"""``reactions.add`` and ``reactions.remove`` (on messages; files are not supported)."""

from __future__ import annotations

from typing import Any

from parley.domain.actions import lookups, messages
from services.slack.errors import SlackError
from services.slack.registry import Args, Ctx, slack_method
from services.slack.ts import seq_of


async def _target(ctx: Ctx, args: Args) -> tuple[int, str]:
    if args.text("file") or args.text("file_comment"):
        raise SlackError("not_implemented")
    conversation = await ctx.conversation(args.required("channel", error="no_item_specified"))
    seq = seq_of(conversation, args.required("timestamp", error="no_item_specified"))
    if seq is None:
        raise SlackError("message_not_found")
    message = await lookups.message_at(ctx.deps, ctx.user, conversation.id, seq)
    return message.id, args.required("name", error="invalid_name")


@slack_method("reactions.add")
async def reactions_add(ctx: Ctx, args: Args) -> dict[str, Any]:
    message_id, name = await _target(ctx, args)
    await messages.add_reaction(ctx.deps, ctx.user, message_id, name)
    return {}


@slack_method("reactions.remove")
async def reactions_remove(ctx: Ctx, args: Args) -> dict[str, Any]:
    message_id, name = await _target(ctx, args)
    await messages.remove_reaction(ctx.deps, ctx.user, message_id, name)
    return {}
