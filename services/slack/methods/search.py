"""``search.messages`` (user tokens only, as in Slack), with the ``in:`` and ``from:``
modifiers; other modifiers are searched as words."""

from __future__ import annotations

import html
import math
import re
from typing import Any

from parley.domain.actions import bots, conversations, lookups
from parley.domain.actions.search import SearchPage, search_messages
from parley.domain.models import Conversation, ConversationKind
from services.slack import ids
from services.slack.errors import SlackError
from services.slack.registry import USER_ONLY, Args, Ctx, slack_method
from services.slack.shapes import Renderer
from services.slack.ts import ts_of

_MODIFIER = re.compile(r"(?<!\S)(in|from):(\S+)")
_HIGHLIGHT_START, _HIGHLIGHT_END = "\ue000", "\ue001"  # Slack's highlight markers
_MAX_COUNT = 100
_MAX_PAGE = 100


async def _channel_filter(ctx: Ctx, value: str) -> int | None:
    """``in:#name``, ``in:<#C…|name>``, ``in:C…`` or ``in:<@U…>`` (the DM with that user; None
    when there is none: a search never opens one)."""
    value = value.strip("<>")
    target = value.split("|", 1)[0]
    parsed = ids.parse_channel(target.lstrip("#"))
    if parsed is not None:
        return (await ctx.conversation(target.lstrip("#"))).id
    user = ids.parse_user(target.lstrip("@"))
    if user is not None:
        dm = await conversations.existing_dm(ctx.deps, ctx.user, ctx.workspace_id, user)
        return dm.id if dm is not None else None
    name = target.lstrip("#").lower()
    for view in await conversations.list_conversations(ctx.deps, ctx.user, ctx.workspace_id):
        if view.conversation.name == name and view.is_member:
            return view.conversation.id
    raise SlackError("channel_not_found")


async def _user_filter(ctx: Ctx, value: str) -> int:
    """``from:@name``, ``from:<@U…>`` or ``from:U…``."""
    target = value.strip("<>").split("|", 1)[0].lstrip("@")
    user = ids.parse_user(target)
    if user is not None:
        return user
    for entry in await bots.directory(ctx.deps, ctx.user, ctx.workspace_id):
        if entry.user.username == target.lower():
            return entry.user.id
    raise SlackError("user_not_found")


def _slack_highlight(rendered_html: str) -> str:
    # The domain gives HTML-escaped text with <mark>…</mark>; the literal tags can only be
    # Parley's (the message's own "<" was escaped), so replace them before unescaping.
    marked = rendered_html.replace("<mark>", _HIGHLIGHT_START).replace("</mark>", _HIGHLIGHT_END)
    return html.unescape(marked).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _channel_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": ids.channel_id(conversation),
        "name": conversation.name or ids.channel_id(conversation),
        "is_channel": conversation.kind in (ConversationKind.PUBLIC, ConversationKind.PRIVATE),
        "is_group": False,
        "is_im": conversation.kind is ConversationKind.DM,
        "is_mpim": conversation.kind is ConversationKind.GROUP_DM,
        "is_private": conversation.kind is not ConversationKind.PUBLIC,
        "is_shared": False,
        "is_org_shared": False,
        "is_ext_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
    }


@slack_method("search.messages", tokens=USER_ONLY)
async def search_messages_method(ctx: Ctx, args: Args) -> dict[str, Any]:
    query = args.required("query", error="no_query")
    count = args.number("count", 20, low=1, high=_MAX_COUNT)
    page_number = args.number("page", 1, low=1, high=_MAX_PAGE)
    highlight = args.flag("highlight")
    conversation_id: int | None = None
    from_user_id: int | None = None
    no_such_dm = False
    for kind, value in _MODIFIER.findall(query):
        if kind == "in":
            conversation_id = await _channel_filter(ctx, value)
            no_such_dm = conversation_id is None
        else:
            from_user_id = await _user_filter(ctx, value)
    words = _MODIFIER.sub(" ", query).strip()
    if not words:
        raise SlackError("no_query")
    result = (
        SearchPage(total=0, matches=[])
        if no_such_dm
        else await search_messages(
            ctx.deps,
            ctx.user,
            words,
            workspace_id=ctx.workspace_id,
            conversation_id=conversation_id,
            from_user_id=from_user_id,
            limit=count,
            offset=(page_number - 1) * count,
        )
    )
    renderer = Renderer(ctx.deps, ctx.user, ctx.workspace_id)
    await renderer.prepare([m.message for m in result.matches])
    authors = await lookups.members_by_id(
        ctx.deps, ctx.user, ctx.workspace_id, [m.message.user_id for m in result.matches]
    )
    matches = []
    for match in result.matches:
        conversation = await ctx.conversation_by_id(match.message.conversation_id)
        rendered = renderer.message(match.message, conversation)
        ts = ts_of(conversation, match.message.seq)
        author = authors.get(match.message.user_id)
        matches.append(
            {
                "iid": f"{match.message.id}",
                "team": ctx.team_id,
                "channel": _channel_summary(conversation),
                "type": "message",
                "user": rendered.get("user"),
                "username": author.username if author else "",
                "ts": ts,
                "text": _slack_highlight(match.highlight) if highlight else rendered.get("text", ""),
                "permalink": f"{ctx.base_url}archives/{ids.channel_id(conversation)}/p{ts.replace('.', '')}",
            }
        )
    pages = max(1, math.ceil(result.total / count))
    first = (page_number - 1) * count + 1
    return {
        "query": query,
        "messages": {
            "total": result.total,
            "matches": matches,
            "pagination": {
                "total_count": result.total,
                "page": page_number,
                "per_page": count,
                "page_count": pages,
                "first": first,
                "last": first + len(matches) - 1,
            },
            "paging": {"count": count, "total": result.total, "page": page_number, "pages": pages},
        },
    }
