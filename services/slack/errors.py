"""Slack's error convention: HTTP 200 with ``{"ok": false, "error": "<code>"}`` (429 with
``Retry-After`` for rate limits), and the translation of Parley's domain error codes."""

from __future__ import annotations

import math
from typing import Any

from parley.domain.errors import DomainError, RateLimited


class SlackError(Exception):
    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        retry_after: float | None = None,
        messages: list[str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.messages = messages
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def ratelimited(retry_after: float) -> SlackError:
    return SlackError("ratelimited", status=429, retry_after=retry_after)


def invalid_arguments(message: str) -> SlackError:
    return SlackError("invalid_arguments", messages=[f"[ERROR] {message}"])


# Parley domain codes whose Slack name differs; every other code is already Slack's
# (channel_not_found, not_in_channel, name_taken, already_reacted, no_reaction,
# cant_update_message, cant_delete_message, message_not_found, thread_not_found, no_text,
# msg_too_long, user_not_found, invalid_name, not_allowed_token_type, too_many_users, ...).
_DOMAIN_TO_SLACK = {
    "rate_limited": "ratelimited",
    "unauthenticated": "invalid_auth",
    "invalid_token": "invalid_auth",
    "token_expired": "token_expired",
    "token_revoked": "token_revoked",
    "not_authed": "not_authed",
    "workspace_not_found": "team_not_found",
    "username_taken": "name_taken",
    "not_owner": "restricted_action",
    "cant_invite": "method_not_supported_for_channel_type",
    "cant_leave_dm": "method_not_supported_for_channel_type",
    "not_a_thread_root": "thread_not_found",
    "invalid_input": "invalid_arguments",
    "invalid_client_msg_id": "invalid_arguments",
    "invalid_query": "invalid_arguments",
    "invalid_event_type": "invalid_arguments",
    "invalid_users": "invalid_arguments",
    "store_unavailable": "service_unavailable",
    "unavailable": "service_unavailable",
    "forbidden": "restricted_action",
    "not_found": "not_found",
}


def from_domain(exc: DomainError) -> SlackError:
    if isinstance(exc, RateLimited):
        return ratelimited(exc.retry_after)
    return SlackError(_DOMAIN_TO_SLACK.get(exc.code, exc.code))
