"""Search: full text over the messages the caller can read."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from parley.domain.deps import Deps
from parley.domain.errors import InvalidInput
from parley.domain.models import Message, User
from parley.domain.permissions import readable_conversation, require_workspace_member
from parley.ports.search import HIGHLIGHT_END, HIGHLIGHT_START, SearchQuery

MAX_QUERY_CHARS = 500
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class SearchMatch:
    message: Message
    highlight: str  # HTML-escaped text with <mark>…</mark> around matches: safe to render


@dataclass(frozen=True, slots=True)
class SearchPage:
    total: int
    matches: list[SearchMatch]


def render_highlight(raw: str) -> str:
    return html.escape(raw).replace(HIGHLIGHT_START, "<mark>").replace(HIGHLIGHT_END, "</mark>")


async def search_messages(
    deps: Deps,
    actor: User,
    text: str,
    *,
    workspace_id: int | None = None,
    conversation_id: int | None = None,
    from_user_id: int | None = None,
    before: datetime | None = None,
    after: datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    text = text.strip()
    if not text or len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query: 1 to {MAX_QUERY_CHARS} characters", code="invalid_query")
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= 10_000:
        raise InvalidInput(f"limit: 1 to {MAX_PAGE}; offset: 0 to 10000", code="invalid_limit")
    async with deps.store.read() as reader:
        if conversation_id is not None:
            await readable_conversation(reader, conversation_id, actor.id)
            allowed = [conversation_id]
        else:
            if workspace_id is not None:
                await require_workspace_member(reader, workspace_id, actor.id)
            # Permission filter: only conversations the caller is a member of, decided here.
            allowed = [m.conversation.id for m in await reader.list_memberships(actor.id, workspace_id)]
    result = await deps.search.search(
        SearchQuery(
            text=text,
            conversation_ids=allowed,
            from_user_id=from_user_id,
            before=before,
            after=after,
            limit=limit,
            offset=offset,
        )
    )
    matches: list[SearchMatch] = []
    async with deps.store.read() as reader:
        found = await reader.get_messages([hit.message_id for hit in result.hits])
    for hit in result.hits:
        message = found.get(hit.message_id)
        # The index lags the store by a moment: skip what was deleted since.
        if message is not None and not message.deleted and message.conversation_id in allowed:
            matches.append(SearchMatch(message, render_highlight(hit.highlight)))
    return SearchPage(total=result.total, matches=matches)
