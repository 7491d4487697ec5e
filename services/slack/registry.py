"""The method registry and what every method handler receives: the request context (``Ctx``:
deps, caller, channel resolution) and its arguments (``Args``: Slack's loose typing, where every
value may arrive as a string from a query string or form, or typed from a JSON body)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from parley.domain.actions import lookups
from parley.domain.actions.api_tokens import ApiCaller
from parley.domain.deps import Deps
from parley.domain.integrations import TokenKind
from parley.domain.models import Conversation, User
from services.slack import ids
from services.slack.errors import SlackError, invalid_arguments
from services.slack.settings import SlackSettings

USER_OR_BOT = frozenset({TokenKind.USER, TokenKind.BOT})
USER_ONLY = frozenset({TokenKind.USER})
APP_ONLY = frozenset({TokenKind.APP})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class Args:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    def get(self, name: str) -> Any:
        value = self.values.get(name)
        return None if value is None or value == "" else value

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            raise invalid_arguments(f"{name} must be a string")
        return str(value)

    def required(self, name: str, error: str | None = None) -> str:
        value = self.text(name)
        if value is None:
            if error:
                raise SlackError(error)
            raise invalid_arguments(f"missing required field: {name}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise invalid_arguments(f"{name} must be true or false")

    def number(
        self, name: str, default: int, *, low: int, high: int, error: str = "invalid_arguments"
    ) -> int:
        """An integer clamped to ``high`` (Slack returns fewer than asked rather than failing);
        below ``low`` or not a number is ``error``."""
        value = self.get(name)
        if value is None:
            return default
        try:
            number = int(str(value).strip())
        except ValueError as exc:
            raise SlackError(error) from exc
        if number < low:
            raise SlackError(error)
        return min(number, high)

    def items(self, name: str) -> list[str]:
        """A comma-separated string or a JSON array (either may arrive)."""
        value = self.get(name)
        if value is None:
            return []
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        text = str(value).strip()
        if text.startswith("["):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise invalid_arguments(f"{name} is not a valid JSON array") from exc
            return [str(v).strip() for v in parsed if str(v).strip()]
        return [part.strip() for part in text.split(",") if part.strip()]


@dataclass
class Ctx:
    deps: Deps
    caller: ApiCaller
    token: str
    settings: SlackSettings
    base_url: str  # where clients reach this service, ending in "/"
    _conversations: dict[int, Conversation] = field(default_factory=dict)

    @property
    def user(self) -> User:
        return self.caller.user

    @property
    def workspace_id(self) -> int:
        return self.caller.workspace.id

    @property
    def team_id(self) -> str:
        return ids.team_id(self.caller.workspace.id)

    def remember(self, conversation: Conversation) -> Conversation:
        self._conversations[conversation.id] = conversation
        return conversation

    async def conversation(self, channel: str | None) -> Conversation:
        """The conversation a channel id names, if the caller may know it and it belongs to
        the token's workspace; ``channel_not_found`` otherwise."""
        parsed = ids.parse_channel(channel)
        if parsed is None:
            raise SlackError("channel_not_found")
        letter, conversation_id = parsed
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            conversation = await lookups.conversation_for(self.deps, self.user, conversation_id)
        if conversation.workspace_id != self.workspace_id or not ids.matches_kind(letter, conversation):
            raise SlackError("channel_not_found")
        return self.remember(conversation)

    async def conversation_by_id(self, conversation_id: int) -> Conversation:
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            conversation = self.remember(
                await lookups.conversation_for(self.deps, self.user, conversation_id)
            )
        return conversation


Handler = Callable[[Ctx, Args], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    tokens: frozenset[TokenKind]  # the kinds of token the method accepts


METHODS: dict[str, Method] = {}


def slack_method(name: str, *, tokens: frozenset[TokenKind] = USER_OR_BOT) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise RuntimeError(f"{name} registered twice")
        METHODS[name] = Method(name, handler, tokens)
        return handler

    return register


# -- cursors: opaque to clients (base64 of "<kind>:<value>"), checked on the way back --------
def encode_cursor(kind: str, value: int | str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: str | None, kind: str) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise SlackError("invalid_cursor") from exc
    found_kind, _, value = raw.partition(":")
    if found_kind != kind or not value:
        raise SlackError("invalid_cursor")
    return value


def decode_int_cursor(cursor: str | None, kind: str) -> int | None:
    value = decode_cursor(cursor, kind)
    if value is None:
        return None
    return cursor_int(value.removeprefix("-")) * (-1 if value.startswith("-") else 1)


_MAX_POSITION = 2**63 - 2  # a position may be used as ``position + 1`` in a BIGINT comparison


def cursor_int(digits: str) -> int:
    """A cursor's number: ASCII digits within a BIGINT (``"²".isdigit()`` is true, and a longer
    number overflows the store), else ``invalid_cursor``."""
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19) or int(digits) > _MAX_POSITION:
        raise SlackError("invalid_cursor")
    return int(digits)


def page_metadata(next_cursor: str | None) -> dict[str, Any]:
    return {"response_metadata": {"next_cursor": next_cursor or ""}}
