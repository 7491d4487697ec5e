"""Message text between Parley (plain text, ``@username`` mentions) and Slack (``&``, ``<``,
``>`` escaped; ``<@U…>``, ``<!here>``, ``<#C…|name>`` and ``<url|label>`` control sequences).

Text posted through the facade is stored as Parley text, so Parley clients see ``@alice``
(and the domain records the mention) where the Slack client wrote ``<@U0ALICE>``; text read
through the facade is rendered the Slack way, so the round trip is stable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from services.slack import ids

# The mention rule of parley/domain/mentions.py (which keeps its pattern private).
_MENTION = re.compile(r"(?<![\w@.])@([a-z0-9][a-z0-9._-]{0,63})", re.IGNORECASE)
_CONTROL = re.compile(r"<([^<>\s][^<>]*)>")
_SPECIAL = frozenset({"channel", "here", "everyone"})


def mentioned_user_ids(slack_text: str) -> list[int]:
    """Parley user ids named by ``<@U…>`` sequences (to look their usernames up first)."""
    found: list[int] = []
    for match in _CONTROL.finditer(slack_text):
        target = match.group(1).split("|", 1)[0]
        if target.startswith("@"):
            number = ids.parse_user(target[1:])
            if number is not None and number not in found:
                found.append(number)
    return found


def to_parley(slack_text: str, usernames: Mapping[int, str]) -> str:
    """Slack text → Parley text; ``usernames`` maps the ids of ``mentioned_user_ids``."""

    def replace(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            number = ids.parse_user(target[1:])
            name = usernames.get(number) if number is not None else None
            return f"@{name}" if name else (f"@{label}" if label else match.group(0))
        if target.startswith("!"):
            word = target[1:].split("^", 1)[0]
            return f"@{word}" if word in _SPECIAL else (label or match.group(0))
        if target.startswith("#"):
            return f"#{label}" if label else match.group(0)
        if label and label != target:
            return f"{label} ({target})"
        return target

    text = _CONTROL.sub(replace, slack_text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def to_slack(parley_text: str, mentioned: Mapping[str, int]) -> str:
    """Parley text → Slack text; ``mentioned`` maps lower-case usernames of the message's
    mentions to their user ids (other ``@words`` stay as they are, as Parley stored them)."""
    escaped = parley_text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).lower().rstrip(".")
        trailing = match.group(1)[len(name) :]
        if name in _SPECIAL:
            return f"<!{name}>{trailing}"
        user = mentioned.get(name)
        return f"<@{ids.user_id(user)}>{trailing}" if user is not None else match.group(0)

    return _MENTION.sub(replace, escaped)
