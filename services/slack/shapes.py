"""Slack-shaped objects (message, conversation, user, bot profile) built from Parley's.

``Renderer`` gathers what a batch of messages needs (authors, mentioned users, bots, thread
roots) with a few domain reads, then renders each message without further I/O. Its caches are
bounded: it may live as long as a Socket Mode session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from parley.domain.actions import bots as bot_actions
from parley.domain.actions import lookups, messages
from parley.domain.deps import Deps
from parley.domain.errors import DomainError
from parley.domain.integrations import Bot
from parley.domain.models import Conversation, ConversationKind, Message, Role, User, Workspace
from services.slack import ids
from services.slack.mrkdwn import to_slack
from services.slack.ts import ts_of

_CACHE_LIMIT = 10_000
TOMBSTONE_TEXT = "This message was deleted."


def epoch(value: Any) -> int:
    return int(value.timestamp())


def channel_type(conversation: Conversation) -> str:
    """``channel_type`` of message events: channel, group (private), im, mpim."""
    return {
        ConversationKind.PUBLIC: "channel",
        ConversationKind.PRIVATE: "group",
        ConversationKind.DM: "im",
        ConversationKind.GROUP_DM: "mpim",
    }[conversation.kind]


def bot_profile(bot: Bot) -> dict[str, Any]:
    return {
        "id": ids.bot_id(bot.user_id),
        "app_id": ids.app_id(bot.user_id),
        "name": bot.name,
        "icons": {},
        "deleted": False,
        "updated": epoch(bot.created_at),
        "team_id": ids.team_id(bot.workspace_id),
    }


def conversation_obj(
    conversation: Conversation,
    *,
    viewer_id: int,
    is_member: bool,
    member_ids: Sequence[int] | None = None,
    usernames: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    created = epoch(conversation.created_at)
    team = ids.team_id(conversation.workspace_id)
    common: dict[str, Any] = {
        "id": ids.channel_id(conversation),
        "created": created,
        "is_archived": False,
        "is_org_shared": False,
        "context_team_id": team,
        "updated": created * 1000,
    }
    if conversation.kind is ConversationKind.DM:
        others = [m for m in (member_ids or []) if m != viewer_id] or [viewer_id]
        return {
            **common,
            "is_im": True,
            "is_channel": False,
            "is_group": False,
            "is_mpim": False,
            "is_private": True,
            "user": ids.user_id(others[0]),
            "is_user_deleted": False,
            "priority": 0,
        }
    if conversation.kind is ConversationKind.GROUP_DM:
        names = [(usernames or {}).get(m) or ids.user_id(m).lower() for m in (member_ids or [])]
        name = "mpdm-" + "--".join(names) + "-1"
    else:
        name = conversation.name or ""
    creator = ids.user_id(conversation.created_by)
    return {
        **common,
        "name": name,
        "name_normalized": name,
        "is_channel": conversation.kind in (ConversationKind.PUBLIC, ConversationKind.PRIVATE),
        "is_group": False,
        "is_im": False,
        "is_mpim": conversation.kind is ConversationKind.GROUP_DM,
        "is_private": conversation.kind is not ConversationKind.PUBLIC,
        "is_general": False,
        "is_shared": False,
        "is_ext_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
        "unlinked": 0,
        "parent_conversation": None,
        "creator": creator,
        "is_member": is_member,
        "shared_team_ids": [team],
        "previous_names": [],
        "topic": {
            "value": conversation.topic,
            "creator": creator if conversation.topic else "",
            "last_set": 0,
        },
        "purpose": {"value": "", "creator": "", "last_set": 0},
    }


def user_obj(user: User, role: Role, bot: Bot | None, workspace: Workspace) -> dict[str, Any]:
    team = ids.team_id(workspace.id)
    profile: dict[str, Any] = {
        "real_name": user.display_name,
        "real_name_normalized": user.display_name,
        "display_name": user.display_name,
        "display_name_normalized": user.display_name,
        "first_name": user.display_name,
        "last_name": "",
        "title": "",
        "status_text": "",
        "status_emoji": "",
        "avatar_hash": "",
        "team": team,
    }
    if bot is not None:
        profile.update({"bot_id": ids.bot_id(bot.user_id), "api_app_id": ids.app_id(bot.user_id)})
        profile["always_active"] = True
    return {
        "id": ids.user_id(user.id),
        "team_id": team,
        "name": user.username,
        "deleted": False,
        "color": "9f69e7",
        "real_name": user.display_name,
        "tz": "UTC",
        "tz_label": "Coordinated Universal Time",
        "tz_offset": 0,
        "profile": profile,
        "is_admin": role is Role.OWNER,
        "is_owner": role is Role.OWNER,
        "is_primary_owner": user.id == workspace.created_by,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": bot is not None,
        "is_app_user": False,
        "updated": epoch(user.created_at),
    }


class Renderer:
    """Messages as Slack shows them, to one viewer in one workspace."""

    def __init__(self, deps: Deps, viewer: User, workspace_id: int) -> None:
        self._deps = deps
        self._viewer = viewer
        self._workspace_id = workspace_id
        self._users: dict[int, User | None] = {}
        self._bots: dict[int, Bot | None] = {}
        self._root_seqs: dict[int, tuple[int, int] | None] = {}  # root id → (seq, author)

    async def prepare(self, batch: Iterable[Message]) -> None:
        batch = list(batch)
        if len(self._users) > _CACHE_LIMIT or len(self._root_seqs) > _CACHE_LIMIT:
            self._users.clear()
            self._bots.clear()
            self._root_seqs.clear()
        wanted = {m.user_id for m in batch} | {u for m in batch for u in m.mentions}
        missing = [u for u in wanted if u not in self._users]
        if missing:
            found = await lookups.members_by_id(self._deps, self._viewer, self._workspace_id, missing)
            bots = await bot_actions.bots_among(self._deps, missing)
            for user_id in missing:
                self._users[user_id] = found.get(user_id)
                self._bots[user_id] = bots.get(user_id)
        for root_id in {m.thread_root_id for m in batch if m.thread_root_id is not None}:
            if root_id not in self._root_seqs:
                assert root_id is not None
                self._root_seqs[root_id] = await self._root(root_id)

    async def _root(self, root_id: int) -> tuple[int, int] | None:
        try:
            root = await messages.get_message(self._deps, self._viewer, root_id)
        except DomainError:
            return None
        return root.seq, root.user_id

    def bot(self, user_id: int) -> Bot | None:
        return self._bots.get(user_id)

    def text(self, message: Message) -> str:
        mentioned = {u.username: u.id for i in message.mentions if (u := self._users.get(i)) is not None}
        return to_slack(message.text, mentioned)

    def message(self, message: Message, conversation: Conversation) -> dict[str, Any]:
        ts = ts_of(conversation, message.seq)
        obj: dict[str, Any] = {"type": "message", "ts": ts, "team": ids.team_id(message.workspace_id)}
        if message.deleted:
            # Only a thread's root is shown once deleted, as Slack's tombstone.
            obj.update({"subtype": "tombstone", "user": "USLACKBOT", "text": TOMBSTONE_TEXT, "hidden": True})
        else:
            obj.update({"user": ids.user_id(message.user_id), "text": self.text(message)})
            if message.client_msg_id:
                obj["client_msg_id"] = message.client_msg_id
        bot = self._bots.get(message.user_id)
        if bot is not None and not message.deleted:
            obj.update({"bot_id": ids.bot_id(bot.user_id), "app_id": ids.app_id(bot.user_id)})
            obj["bot_profile"] = bot_profile(bot)
        if message.thread_root_id is not None:
            root = self._root_seqs.get(message.thread_root_id)
            if root is not None:
                obj["thread_ts"] = ts_of(conversation, root[0])
                obj["parent_user_id"] = ids.user_id(root[1])
        elif message.reply_count > 0:
            obj.update({"thread_ts": ts, "reply_count": message.reply_count})
        if message.edited_at is not None and not message.deleted:
            obj["edited"] = {"user": ids.user_id(message.user_id), "ts": f"{epoch(message.edited_at)}.000000"}
        if message.reactions and not message.deleted:
            obj["reactions"] = [
                {"name": r.emoji, "users": [ids.user_id(u) for u in r.user_ids], "count": r.count}
                for r in message.reactions
            ]
        return obj
