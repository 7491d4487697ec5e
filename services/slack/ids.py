"""Slack-style ids for Parley's numeric ids: a type letter and the id in base 36.

Slack clients expect ``T…`` teams, ``U…`` users, ``B…`` bots, ``A…`` apps, ``C…`` channels,
``G…`` group DMs and ``D…`` DMs. The encoding is reversible and stateless, so any node can
translate in both directions without a mapping table. Public and private channels both get
``C`` (as in today's Slack); the letter of a conversation id is checked against its kind when
decoded, so ``D…`` never names a channel.
"""

from __future__ import annotations

import re

from parley.domain.models import Conversation, ConversationKind

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID = re.compile(r"^([A-Z])([0-9A-Z]{1,13})$")
_MAX_ID = (1 << 63) - 1
CONVERSATION_LETTERS: dict[ConversationKind, str] = {
    ConversationKind.PUBLIC: "C",
    ConversationKind.PRIVATE: "C",
    ConversationKind.DM: "D",
    ConversationKind.GROUP_DM: "G",
}


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("ids are non-negative")
    digits = []
    while True:
        number, rest = divmod(number, 36)
        digits.append(_DIGITS[rest])
        if number == 0:
            return "".join(reversed(digits))


def _encode(letter: str, number: int) -> str:
    return letter + _base36(number)


def _decode(value: object, letters: str) -> int | None:
    if not isinstance(value, str):
        return None
    match = _ID.match(value.strip())
    if match is None or match.group(1) not in letters:
        return None
    number = int(match.group(2), 36)
    return number if number <= _MAX_ID else None


def team_id(workspace_id: int) -> str:
    return _encode("T", workspace_id)


def user_id(parley_user_id: int) -> str:
    return _encode("U", parley_user_id)


def bot_id(bot_user_id: int) -> str:
    return _encode("B", bot_user_id)


def app_id(bot_user_id: int) -> str:
    """One app per bot, so the app id is derived from the bot user's id too."""
    return _encode("A", bot_user_id)


def event_id(parley_event_id: int, suffix: str = "") -> str:
    return "Ev" + _base36(parley_event_id) + suffix


def channel_id(conversation: Conversation) -> str:
    return _encode(CONVERSATION_LETTERS[conversation.kind], conversation.id)


def parse_team(value: object) -> int | None:
    return _decode(value, "T")


def parse_user(value: object) -> int | None:
    # Enterprise Grid users have W ids; accept them as users too.
    return _decode(value, "UW")


def parse_bot(value: object) -> int | None:
    return _decode(value, "B")


def parse_channel(value: object) -> tuple[str, int] | None:
    """(letter, conversation id) of a ``C…``/``G…``/``D…`` id, or None if it is not one."""
    number = _decode(value, "CGD")
    if number is None:
        return None
    assert isinstance(value, str)
    return value.strip()[0], number


def matches_kind(letter: str, conversation: Conversation) -> bool:
    return CONVERSATION_LETTERS[conversation.kind] == letter
