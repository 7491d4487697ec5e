"""Parley events → Slack Events API events, as one bot sees them.

    message.created  → message (and app_mention when the bot is mentioned)
    message.edited   → message, subtype message_changed
    message.deleted  → message, subtype message_deleted
    reaction.added   → reaction_added          reaction.removed → reaction_removed
    member.joined    → member_joined_channel   member.left      → member_left_channel

``event_ts`` of a persisted event is the ``ts`` of its seq (see ts.py), so it is unique and
increasing per conversation like a message's ``ts``; ``event_id`` is derived from Parley's
event id, so a redelivered event carries the same id (clients may deduplicate by it).
"""

from __future__ import annotations

import logging
from typing import Any

from parley.domain.actions import lookups, messages
from parley.domain.actions.api_tokens import ApiCaller
from parley.domain.deps import Deps
from parley.domain.errors import DomainError
from parley.domain.events import Event, EventType
from parley.domain.models import Conversation, ConversationKind, Message
from services.slack import ids
from services.slack.shapes import Renderer, channel_type
from services.slack.ts import ts_of

log = logging.getLogger(__name__)
_CONVERSATION_CACHE = 10_000


def event_callback(
    caller: ApiCaller, event: dict[str, Any], event_id: str, event_time: int
) -> dict[str, Any]:
    """The Events API envelope payload (``type: event_callback``) for one event."""
    assert caller.bot is not None
    team = ids.team_id(caller.workspace.id)
    return {
        "token": "",
        "team_id": team,
        "context_team_id": team,
        "context_enterprise_id": None,
        "api_app_id": ids.app_id(caller.bot.user_id),
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": ids.user_id(caller.user.id),
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"parley-{event_id}",
    }


class EventTranslator:
    """Translates one bot's stream of Parley events; keeps small caches for its lifetime."""

    def __init__(self, deps: Deps, caller: ApiCaller) -> None:
        self._deps = deps
        self._caller = caller
        self._renderer = Renderer(deps, caller.user, caller.workspace.id)
        self._conversations: dict[int, Conversation] = {}

    async def translate(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        """(event_id, Slack event) pairs; empty for what Slack has no event for."""
        if event.conversation_id is None or event.seq is None:
            return []
        try:
            conversation = await self._conversation(event)
            if event.type is EventType.MESSAGE_CREATED:
                return await self._message_created(event, conversation)
            if event.type in (EventType.MESSAGE_EDITED, EventType.MESSAGE_DELETED):
                return await self._message_changed(event, conversation)
            if event.type in (EventType.REACTION_ADDED, EventType.REACTION_REMOVED):
                return await self._reaction(event, conversation)
            if event.type in (EventType.MEMBER_JOINED, EventType.MEMBER_LEFT):
                return self._membership(event, conversation)
        except DomainError as exc:
            # The bot lost access in between (left, message gone): nothing to tell it.
            log.debug(
                "event %s not translated for bot %s: %s", event.event_id, self._caller.user.id, exc.code
            )
        return []

    async def _conversation(self, event: Event) -> Conversation:
        assert event.conversation_id is not None
        cached = self._conversations.get(event.conversation_id)
        if cached is not None:
            return cached
        if isinstance(event.data.get("conversation"), dict):
            conversation = Conversation.model_validate(event.data["conversation"])
        else:
            conversation = await lookups.conversation_for(
                self._deps, self._caller.user, event.conversation_id
            )
        if len(self._conversations) > _CONVERSATION_CACHE:
            self._conversations.clear()
        # Only immutable fields are used (id, kind, workspace, created_at): caching is safe.
        self._conversations[conversation.id] = conversation
        return conversation

    def _event_ts(self, event: Event, conversation: Conversation) -> str:
        assert event.seq is not None
        return ts_of(conversation, event.seq)

    async def _message_created(
        self, event: Event, conversation: Conversation
    ) -> list[tuple[str, dict[str, Any]]]:
        message = Message.model_validate(event.data["message"])
        await self._renderer.prepare([message])
        rendered = self._renderer.message(message, conversation)
        common = {"channel": ids.channel_id(conversation), "event_ts": rendered["ts"]}
        out = [
            (ids.event_id(event.event_id), {**rendered, **common, "channel_type": channel_type(conversation)})
        ]
        bot_user = self._caller.user.id
        if bot_user in message.mentions and message.user_id != bot_user:
            mention: dict[str, Any] = {
                key: rendered[key]
                for key in (
                    "type",
                    "user",
                    "text",
                    "ts",
                    "team",
                    "client_msg_id",
                    "thread_ts",
                    "parent_user_id",
                )
                if key in rendered
            }
            mention["type"] = "app_mention"
            out.append((ids.event_id(event.event_id, "M"), {**mention, **common}))
        return out

    async def _message_changed(
        self, event: Event, conversation: Conversation
    ) -> list[tuple[str, dict[str, Any]]]:
        message = Message.model_validate(event.data["message"])
        event_ts = self._event_ts(event, conversation)
        base = {
            "type": "message",
            "hidden": True,
            "channel": ids.channel_id(conversation),
            "channel_type": channel_type(conversation),
            "ts": event_ts,
            "event_ts": event_ts,
        }
        message_ts = ts_of(conversation, message.seq)
        if event.type is EventType.MESSAGE_DELETED:
            previous = {"type": "message", "user": ids.user_id(message.user_id), "ts": message_ts}
            body = {
                **base,
                "subtype": "message_deleted",
                "deleted_ts": message_ts,
                "previous_message": previous,
            }
        else:
            await self._renderer.prepare([message])
            body = {
                **base,
                "subtype": "message_changed",
                "message": self._renderer.message(message, conversation),
            }
        return [(ids.event_id(event.event_id), body)]

    async def _reaction(self, event: Event, conversation: Conversation) -> list[tuple[str, dict[str, Any]]]:
        message = await messages.get_message(self._deps, self._caller.user, int(event.data["message_id"]))
        kind = "reaction_added" if event.type is EventType.REACTION_ADDED else "reaction_removed"
        body = {
            "type": kind,
            "user": ids.user_id(int(event.data["user_id"])),
            "reaction": event.data["emoji"],
            "item_user": ids.user_id(message.user_id),
            "item": {
                "type": "message",
                "channel": ids.channel_id(conversation),
                "ts": ts_of(conversation, message.seq),
            },
            "event_ts": self._event_ts(event, conversation),
        }
        return [(ids.event_id(event.event_id), body)]

    def _membership(self, event: Event, conversation: Conversation) -> list[tuple[str, dict[str, Any]]]:
        kind = "member_joined_channel" if event.type is EventType.MEMBER_JOINED else "member_left_channel"
        body = {
            "type": kind,
            "user": ids.user_id(int(event.data["user_id"])),
            "channel": ids.channel_id(conversation),
            "channel_type": "C" if conversation.kind is ConversationKind.PUBLIC else "G",
            "team": ids.team_id(conversation.workspace_id),
            "event_ts": self._event_ts(event, conversation),
        }
        return [(ids.event_id(event.event_id), body)]
