"""``conversations.*``: list, create, join, invite, leave, open, info, members, history, replies."""

from __future__ import annotations

from typing import Any

from parley.domain.actions import conversations, lookups, messages
from parley.domain.actions.conversations import DM_KINDS, ConversationView
from parley.domain.models import Conversation, ConversationKind, Message
from services.slack import ids
from services.slack.errors import SlackError
from services.slack.registry import (
    Args,
    Ctx,
    cursor_int,
    decode_cursor,
    decode_int_cursor,
    encode_cursor,
    page_metadata,
    slack_method,
)
from services.slack.shapes import Renderer, conversation_obj
from services.slack.ts import bound_of, seq_of, ts_of

_TYPES = {
    "public_channel": {ConversationKind.PUBLIC},
    "private_channel": {ConversationKind.PRIVATE},
    "mpim": {ConversationKind.GROUP_DM},
    "im": {ConversationKind.DM},
}
_MAX_LIST = 1000


async def _usernames(ctx: Ctx, member_ids: list[int]) -> dict[int, str]:
    if not member_ids:
        return {}
    found = await lookups.members_by_id(ctx.deps, ctx.user, ctx.workspace_id, member_ids)
    return {uid: u.username for uid, u in found.items()}


def _view_obj(ctx: Ctx, view: ConversationView, usernames: dict[int, str]) -> dict[str, Any]:
    return conversation_obj(
        view.conversation,
        viewer_id=ctx.user.id,
        is_member=view.is_member,
        member_ids=view.member_ids,
        usernames=usernames,
    )


@slack_method("conversations.list")
async def conversations_list(ctx: Ctx, args: Args) -> dict[str, Any]:
    types = args.items("types") or ["public_channel"]
    if any(t not in _TYPES for t in types):
        raise SlackError("invalid_types")
    kinds = set().union(*(_TYPES[t] for t in types))
    limit = args.number("limit", 100, low=1, high=_MAX_LIST, error="invalid_limit")
    after = decode_int_cursor(args.text("cursor"), "conversations") or 0
    views = await conversations.list_conversations(
        ctx.deps, ctx.user, ctx.workspace_id, include_public=ConversationKind.PUBLIC in kinds
    )
    # Stable order for cursors: by id (ids only grow, so a page boundary never moves).
    wanted = sorted(
        (v for v in views if v.conversation.kind in kinds and v.conversation.id > after),
        key=lambda v: v.conversation.id,
    )
    page = wanted[:limit]
    group_members = [
        m for v in page if v.conversation.kind is ConversationKind.GROUP_DM for m in v.member_ids or []
    ]
    usernames = await _usernames(ctx, group_members)
    next_cursor = encode_cursor("conversations", page[-1].conversation.id) if len(wanted) > limit else None
    return {"channels": [_view_obj(ctx, v, usernames) for v in page], **page_metadata(next_cursor)}


@slack_method("conversations.create")
async def conversations_create(ctx: Ctx, args: Args) -> dict[str, Any]:
    name = args.required("name", error="invalid_name_required")
    created = await conversations.create_channel(
        ctx.deps, ctx.user, ctx.workspace_id, name, private=args.flag("is_private")
    )
    return {"channel": conversation_obj(created, viewer_id=ctx.user.id, is_member=True)}


@slack_method("conversations.join")
async def conversations_join(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    if conversation.kind is not ConversationKind.PUBLIC:
        raise SlackError("method_not_supported_for_channel_type")
    view = await conversations.get_conversation(ctx.deps, ctx.user, conversation.id)
    joined = await conversations.join(ctx.deps, ctx.user, conversation.id)
    result: dict[str, Any] = {"channel": conversation_obj(joined, viewer_id=ctx.user.id, is_member=True)}
    if view.is_member:
        result["warning"] = "already_in_channel"
        result["response_metadata"] = {"warnings": ["already_in_channel"]}
    return result


@slack_method("conversations.invite")
async def conversations_invite(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    user_ids = [ids.parse_user(u) for u in args.items("users")]
    if not user_ids:
        raise SlackError("no_user")
    if any(u is None for u in user_ids):
        raise SlackError("user_not_found")
    for user_id in user_ids:
        assert user_id is not None
        if user_id == ctx.user.id:
            raise SlackError("cant_invite_self")
        conversation = await conversations.add_member(ctx.deps, ctx.user, conversation.id, user_id)
    return {"channel": conversation_obj(conversation, viewer_id=ctx.user.id, is_member=True)}


@slack_method("conversations.leave")
async def conversations_leave(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    await conversations.leave(ctx.deps, ctx.user, conversation.id)
    return {}


@slack_method("conversations.open")
async def conversations_open(ctx: Ctx, args: Args) -> dict[str, Any]:
    """Open (or find) the DM or group DM with ``users``; or return ``channel`` if given."""
    channel = args.text("channel")
    if channel:
        conversation = await ctx.conversation(channel)
        if conversation.kind not in DM_KINDS:
            raise SlackError("method_not_supported_for_channel_type")
    else:
        user_ids = [ids.parse_user(u) for u in args.items("users")]
        if not user_ids:
            raise SlackError("users_list_not_supplied")
        if any(u is None for u in user_ids):
            raise SlackError("user_not_found")
        others = [u for u in user_ids if u is not None]
        conversation = await conversations.open_dm(ctx.deps, ctx.user, ctx.workspace_id, others)
    if not args.flag("return_im"):
        return {"channel": {"id": ids.channel_id(conversation)}}
    view = await conversations.get_conversation(ctx.deps, ctx.user, conversation.id)
    return {"channel": _view_obj(ctx, view, await _usernames(ctx, view.member_ids or []))}


@slack_method("conversations.info")
async def conversations_info(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    view = await conversations.get_conversation(ctx.deps, ctx.user, conversation.id)
    usernames = await _usernames(ctx, view.member_ids or []) if conversation.kind in DM_KINDS else {}
    obj = _view_obj(ctx, view, usernames)
    if view.is_member:
        obj["last_read"] = ts_of(conversation, view.last_read_seq)
        obj["unread_count"] = obj["unread_count_display"] = view.unread_count
    if args.flag("include_num_members"):
        obj["num_members"] = len(await conversations.list_members(ctx.deps, ctx.user, conversation.id))
    return {"channel": obj}


@slack_method("conversations.members")
async def conversations_members(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    limit = args.number("limit", 100, low=1, high=_MAX_LIST, error="invalid_limit")
    after = decode_int_cursor(args.text("cursor"), "members") or 0
    members = sorted(u.id for u in await conversations.list_members(ctx.deps, ctx.user, conversation.id))
    rest = [m for m in members if m > after]
    page = rest[:limit]
    next_cursor = encode_cursor("members", page[-1]) if len(rest) > limit else None
    return {"members": [ids.user_id(m) for m in page], **page_metadata(next_cursor)}


def _bound(conversation: Conversation, args: Args, name: str) -> int | None:
    raw = args.text(name)
    if raw is None:
        return None
    position = bound_of(conversation, raw)
    if position is None:
        raise SlackError(f"invalid_ts_{name}")
    return position


async def _render(ctx: Ctx, conversation: Conversation, batch: list[Message]) -> list[dict[str, Any]]:
    renderer = Renderer(ctx.deps, ctx.user, ctx.workspace_id)
    await renderer.prepare(batch)
    return [renderer.message(m, conversation) for m in batch]


@slack_method("conversations.history")
async def conversations_history(ctx: Ctx, args: Args) -> dict[str, Any]:
    """Top-level messages, newest first. Without ``oldest`` the page is the newest ``limit``
    before ``latest``; with ``oldest`` it is the ``limit`` right after ``oldest`` (so polling
    with ``oldest=<last ts seen>`` misses nothing). ``next_cursor`` continues in that direction."""
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    limit = args.number("limit", 100, low=1, high=messages.MAX_PAGE, error="invalid_limit")
    inclusive = args.flag("inclusive")
    latest, oldest = _bound(conversation, args, "latest"), _bound(conversation, args, "oldest")
    before = None if latest is None else latest + (1 if inclusive else 0)
    after = None if oldest is None else max(0, oldest - (1 if inclusive else 0))
    cursor = decode_cursor(args.text("cursor"), "history")
    if cursor is not None:
        direction, position = cursor[:1], cursor[1:]
        if direction not in ("b", "a"):
            raise SlackError("invalid_cursor")
        if direction == "b":
            before = cursor_int(position)
        else:
            after = cursor_int(position)
    page = await messages.history(
        ctx.deps, ctx.user, conversation.id, before_seq=before, after_seq=after, limit=limit
    )
    batch = page.messages
    if after is None:
        next_cursor = encode_cursor("history", f"b{batch[-1].seq}") if page.has_more and batch else None
    else:
        # Paging forward from ``oldest`` stops at ``latest`` (the store already applied it).
        next_cursor = encode_cursor("history", f"a{batch[-1].seq}") if page.has_more and batch else None
        batch = list(reversed(batch))
    # Deleted messages disappear, except thread roots with replies (Slack's tombstones).
    shown = [m for m in batch if not m.deleted or m.reply_count > 0]
    return {
        "messages": await _render(ctx, conversation, shown),
        "has_more": page.has_more,
        "pin_count": 0,
        "channel_actions_count": 0,
        "channel_actions_ts": None,
        **page_metadata(next_cursor),
    }


@slack_method("conversations.replies")
async def conversations_replies(ctx: Ctx, args: Args) -> dict[str, Any]:
    """A thread: its root first, then replies oldest first (the root heads every page)."""
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    seq = seq_of(conversation, args.required("ts", error="thread_not_found"))
    if seq is None:
        raise SlackError("thread_not_found")
    limit = args.number("limit", 100, low=1, high=messages.MAX_PAGE, error="invalid_limit")
    message = await lookups.message_at(ctx.deps, ctx.user, conversation.id, seq)
    root_id = message.thread_root_id or message.id
    inclusive = args.flag("inclusive")
    oldest, latest = _bound(conversation, args, "oldest"), _bound(conversation, args, "latest")
    after = decode_int_cursor(args.text("cursor"), "replies")
    if after is None and oldest is not None:
        after = max(0, oldest - (1 if inclusive else 0))
    root, page = await messages.thread_replies(ctx.deps, ctx.user, root_id, after_seq=after, limit=limit)
    if root.deleted and root.reply_count == 0:
        raise SlackError("thread_not_found")
    replies = [m for m in page.messages if not m.deleted]
    if latest is not None:
        replies = [m for m in replies if m.seq < latest or (inclusive and m.seq == latest)]
    next_cursor = encode_cursor("replies", page.messages[-1].seq) if page.has_more and page.messages else None
    return {
        "messages": await _render(ctx, conversation, [root, *replies]),
        "has_more": page.has_more,
        **page_metadata(next_cursor),
    }
