"""``chat.postMessage``, ``chat.update``, ``chat.delete``."""

from __future__ import annotations

from typing import Any

import orjson

from parley.domain.actions import conversations, lookups, messages
from parley.domain.models import Conversation, Message
from services.slack import ids
from services.slack.errors import SlackError
from services.slack.mrkdwn import mentioned_user_ids, to_parley
from services.slack.registry import Args, Ctx, slack_method
from services.slack.shapes import Renderer
from services.slack.ts import seq_of, ts_of

_MAX_BLOCK_DEPTH = 32  # Block Kit nests a few levels; JSON may nest 1,024 (and Python's stack less)


def _block_texts(node: Any, depth: int = 0) -> list[str]:
    """The text of Block Kit blocks, in reading order (a fallback when ``text`` is absent)."""
    if depth > _MAX_BLOCK_DEPTH:
        raise SlackError("invalid_blocks")
    if isinstance(node, list):
        return [t for item in node for t in _block_texts(item, depth + 1)]
    if not isinstance(node, dict):
        return []
    found: list[str] = []
    if isinstance(node.get("text"), str) and node.get("type") in ("mrkdwn", "plain_text", "text", "link"):
        found.append(node["text"])
    for key in ("text", "fields", "elements", "blocks"):
        child = node.get(key)
        if isinstance(child, (dict, list)):
            found += _block_texts(child, depth + 1)
    return found


def _message_text(args: Args) -> str:
    text = args.text("text")
    if text and text.strip():
        return text
    for name in ("blocks", "attachments"):
        raw = args.get(name)
        if isinstance(raw, str):
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise SlackError(f"invalid_{name}") from exc
        if name == "attachments" and isinstance(raw, list):
            fallback = [a.get("fallback") or a.get("text") for a in raw if isinstance(a, dict)]
            texts = [t for t in fallback if isinstance(t, str) and t]
        else:
            texts = _block_texts(raw)
        if texts:
            return "\n".join(texts)
    raise SlackError("no_text")


async def parley_text(ctx: Ctx, slack_text: str) -> str:
    """Slack text as Parley stores it (``<@U…>`` becomes ``@username``, entities unescaped)."""
    mentioned = mentioned_user_ids(slack_text)
    users = await lookups.members_by_id(ctx.deps, ctx.user, ctx.workspace_id, mentioned) if mentioned else {}
    return to_parley(slack_text, {uid: u.username for uid, u in users.items()})


async def _target(ctx: Ctx, channel: str) -> Conversation:
    """A channel id, or a user id (Slack posts those to the DM with that user)."""
    other = ids.parse_user(channel)
    if other is None:
        return await ctx.conversation(channel)
    return ctx.remember(await conversations.open_dm(ctx.deps, ctx.user, ctx.workspace_id, [other]))


async def _message_by_ts(ctx: Ctx, conversation: Conversation, ts: str | None, error: str) -> Message:
    seq = seq_of(conversation, ts)
    if seq is None:
        raise SlackError(error)
    message = await lookups.message_at(ctx.deps, ctx.user, conversation.id, seq)
    if message.deleted:
        raise SlackError(error)
    return message


async def _rendered(ctx: Ctx, conversation: Conversation, message: Message) -> dict[str, Any]:
    renderer = Renderer(ctx.deps, ctx.user, ctx.workspace_id)
    await renderer.prepare([message])
    return renderer.message(message, conversation)


@slack_method("chat.postMessage")
async def chat_post_message(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await _target(ctx, args.required("channel", error="channel_not_found"))
    text = await parley_text(ctx, _message_text(args))
    root_id = None
    thread_ts = args.text("thread_ts")
    if thread_ts:
        parent = await _message_by_ts(ctx, conversation, thread_ts, "thread_not_found")
        # A reply to a reply goes to the thread's root, as in Slack.
        root_id = parent.thread_root_id or parent.id
    message, _ = await messages.send_message(
        ctx.deps, ctx.user, conversation.id, text, thread_root_id=root_id
    )
    return {
        "channel": ids.channel_id(conversation),
        "ts": ts_of(conversation, message.seq),
        "message": await _rendered(ctx, conversation, message),
    }


@slack_method("chat.update")
async def chat_update(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    message = await _message_by_ts(ctx, conversation, args.text("ts"), "message_not_found")
    text = await parley_text(ctx, _message_text(args))
    edited = await messages.edit_message(ctx.deps, ctx.user, message.id, text)
    rendered = await _rendered(ctx, conversation, edited)
    return {
        "channel": ids.channel_id(conversation),
        "ts": rendered["ts"],
        "text": rendered["text"],
        "message": rendered,
    }


@slack_method("chat.delete")
async def chat_delete(ctx: Ctx, args: Args) -> dict[str, Any]:
    conversation = await ctx.conversation(args.required("channel", error="channel_not_found"))
    message = await _message_by_ts(ctx, conversation, args.text("ts"), "message_not_found")
    await messages.delete_message(ctx.deps, ctx.user, message.id)
    return {"channel": ids.channel_id(conversation), "ts": ts_of(conversation, message.seq)}
