"""Bots and API tokens: the identities behind programmatic clients (the Slack-compatible facade).

A bot is an ordinary Parley user (it posts, joins and reacts through the same actions) with a
``bots`` row saying so; it cannot log in with a password. API tokens are long random strings
shown once; the store keeps only their SHA-256 (a fast hash is enough for 192 random bits —
there is nothing to brute-force, unlike a password).

Token kinds follow Slack's prefixes so Slack clients recognise them: ``xoxp-`` (a user's token),
``xoxb-`` (a bot's token), ``xapp-`` (an app-level token, only good for opening Socket Mode).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

from parley.domain.models import Id, Model


class TokenKind(StrEnum):
    USER = "user"
    BOT = "bot"
    APP = "app"


TOKEN_PREFIXES: dict[TokenKind, str] = {
    TokenKind.USER: "xoxp-",
    TokenKind.BOT: "xoxb-",
    TokenKind.APP: "xapp-",
}

# Events a bot receives when it names none (what a Slack app subscribed to `message.*` and
# `app_mention` gets). Clients such as Bolt leave events they have no listener for unacked,
# and unacked events are redelivered, so bots should subscribe only to what they handle.
DEFAULT_BOT_EVENTS: tuple[str, ...] = ("message", "app_mention")
KNOWN_BOT_EVENTS: frozenset[str] = frozenset(
    {
        "message",
        "app_mention",
        "reaction_added",
        "reaction_removed",
        "member_joined_channel",
        "member_left_channel",
    }
)


class Bot(Model):
    user_id: Id
    workspace_id: Id
    name: str
    event_types: tuple[str, ...] = DEFAULT_BOT_EVENTS
    created_by: Id | None = None
    created_at: datetime


class ApiToken(Model):
    token_hash: str
    kind: TokenKind
    user_id: Id
    workspace_id: Id
    created_at: datetime


def new_token(kind: TokenKind) -> str:
    return f"{TOKEN_PREFIXES[kind]}{secrets.token_hex(24)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_kind(token: str) -> TokenKind | None:
    """The kind a token's prefix claims (the store has the final word)."""
    for kind, prefix in TOKEN_PREFIXES.items():
        if token.startswith(prefix):
            return kind
    return None
