"""``@user`` / ``@channel`` mentions, parsed from message text (Slack's rules, simplified:
``@here`` and ``@everyone`` count as ``@channel``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MENTION = re.compile(r"(?<![\w@.])@([a-z0-9][a-z0-9._-]{0,63})", re.IGNORECASE)
CHANNEL_WORDS = frozenset({"channel", "here", "everyone"})


@dataclass(frozen=True, slots=True)
class ParsedMentions:
    usernames: tuple[str, ...]
    channel: bool


def parse_mentions(text: str) -> ParsedMentions:
    names: list[str] = []
    channel = False
    for match in _MENTION.finditer(text):
        name = match.group(1).lower().rstrip(".")
        if name in CHANNEL_WORDS:
            channel = True
        elif name not in names:
            names.append(name)
    return ParsedMentions(usernames=tuple(names), channel=channel)
