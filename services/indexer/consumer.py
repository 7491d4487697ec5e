"""IndexerConsumer: message events → the search index.

Consumes ``parley.conversation-events.v1`` (group ``indexer``); produces index upserts and
deletes. Idempotent: upserts by message id, so a replayed batch rewrites the same documents.
Within a batch the last event per message wins (an edit after a create, a delete after both).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from parley.domain.events import Event, EventType
from parley.ports.search import SearchDoc, SearchIndex


class IndexerConsumer:
    group = "indexer"

    def __init__(self, search: SearchIndex, *, linger: float = 0.0) -> None:
        self._search = search
        # A message is searchable at the engine's next refresh (Elasticsearch: every second),
        # so gathering larger bulk writes for a fraction of that costs users little.
        self.linger = linger

    async def check_engine(self) -> None:
        await self._search.ping()

    async def handle_batch(self, events: Sequence[Event]) -> None:
        latest: dict[int, SearchDoc | None] = {}
        for event in events:
            if event.type in (EventType.MESSAGE_CREATED, EventType.MESSAGE_EDITED):
                doc = _doc(event.data["message"])
                latest[doc.message_id] = doc
            elif event.type is EventType.MESSAGE_DELETED:
                latest[int(event.data["message"]["id"])] = None
        docs = [d for d in latest.values() if d is not None]
        deleted = [mid for mid, d in latest.items() if d is None]
        if docs:
            await self._search.index(docs)
        if deleted:
            await self._search.delete(deleted)


def _doc(message: dict[str, object]) -> SearchDoc:
    root = message.get("thread_root_id")
    return SearchDoc(
        message_id=int(str(message["id"])),
        conversation_id=int(str(message["conversation_id"])),
        workspace_id=int(str(message["workspace_id"])),
        user_id=int(str(message["user_id"])),
        text=str(message["text"]),
        created_at=datetime.fromisoformat(str(message["created_at"])),
        thread_root_id=int(str(root)) if root else None,
    )
