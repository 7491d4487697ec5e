"""Slack Web API methods, one module per family; importing this package registers them all."""

from services.slack.methods import apps, auth, chat, conversations, reactions, search, users

__all__ = ["apps", "auth", "chat", "conversations", "reactions", "search", "users"]
