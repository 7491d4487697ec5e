"""The search port: full-text index of messages.

Guarantees: ``index`` is an idempotent upsert by message id (replaying events is harmless);
``search`` only returns messages from ``SearchQuery.conversation_ids`` (the caller's readable
set, decided by the domain); highlights wrap matches in ``HIGHLIGHT_START``/``HIGHLIGHT_END``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"


@dataclass(frozen=True, slots=True)
class SearchDoc:
    message_id: int
    conversation_id: int
    workspace_id: int
    user_id: int
    text: str
    created_at: datetime
    thread_root_id: int | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    conversation_ids: Sequence[int]
    from_user_id: int | None = None
    before: datetime | None = None
    after: datetime | None = None
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: int
    conversation_id: int
    user_id: int
    created_at: datetime
    highlight: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int
    hits: list[SearchHit] = field(default_factory=list)


class SearchIndex(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def index(self, docs: Sequence[SearchDoc]) -> None: ...

    async def delete(self, message_ids: Sequence[int]) -> None: ...

    async def search(self, query: SearchQuery) -> SearchResult: ...

    async def refresh(self) -> None:
        """Make everything indexed so far visible to ``search`` (tests, reindex)."""
        ...

    async def rebuild(self, docs: AsyncIterable[Sequence[SearchDoc]]) -> int:
        """Replace the whole index with ``docs``, switching atomically at the end (searches see
        the old index until then); returns how many were loaded. Writes made meanwhile may be
        lost: stop the indexer, or run it again after (indexing is idempotent)."""
        ...
