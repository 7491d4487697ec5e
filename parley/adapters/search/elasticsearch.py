"""Search port on Elasticsearch, through the official async client.

Layout: an index template ``<index>`` applies the analyzer and the mapping to every index named
``<index>-v<N>``; the alias ``<index>`` points at exactly one of them and all reads and writes
go through the alias. That is what makes a rebuild invisible to users: ``rebuild`` loads a new
``-v<N+1>`` next to the live one and swaps the alias in one atomic ``_aliases`` call.

Matching follows the FTS5 adapter: every word must occur (``match`` with ``operator: and``),
case and diacritics are ignored and English words are stemmed (standard tokenizer, lowercase,
asciifolding, porter_stem: no plugin needed; a node built without the analysis-common module
gets lowercase whole words only, with a warning), ranking is BM25 with the newest message first
on equal scores. The permission filter is a ``terms`` filter on the caller's readable
conversations, in filter context so it neither scores nor can be bypassed by the query text,
which is never parsed as query syntax.

The client's major version must match the server's (the 9.x client sends a ``compatible-with=9``
header an 8.x server refuses): pin ``elasticsearch`` to the server's major.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError
from elasticsearch.helpers import async_bulk

from parley.adapters.search import from_epoch_ms, to_epoch_ms
from parley.ports.search import (
    HIGHLIGHT_END,
    HIGHLIGHT_START,
    SearchDoc,
    SearchHit,
    SearchIndex,
    SearchQuery,
    SearchResult,
)

# Elasticsearch refuses from + size beyond index.max_result_window (10,000 by default); past it
# we return the total with an empty page instead of an error.
_MAX_RESULT_WINDOW = 10_000

logger = logging.getLogger(__name__)

# Folding accents and stemming English words need the filters of Elasticsearch's analysis-common
# module, which every distribution ships; a stripped-down node without it gets the standard
# analyzer (lowercase only), see ``_text_analyzer``.
_FOLDING_STEMMING_ANALYZER: dict[str, Any] = {
    "type": "custom",
    "tokenizer": "standard",
    "filter": ["lowercase", "asciifolding", "porter_stem"],
}
_PLAIN_ANALYZER: dict[str, Any] = {"type": "standard"}


def _settings(text_analyzer: dict[str, Any]) -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        # No replica on a single node (a replica that cannot be placed would keep the index
        # yellow), one as soon as a second node joins.
        "auto_expand_replicas": "0-1",
        "analysis": {"analyzer": {"parley_text": text_analyzer}},
    }


_MAPPINGS: dict[str, Any] = {
    # strict: a typo in a field name fails the write instead of silently adding a field.
    "dynamic": "strict",
    "properties": {
        # long, not keyword: it is the last sort key (a stable order for equal score and time).
        "message_id": {"type": "long"},
        # keyword: the ids are only ever matched exactly (terms filters), never ranged.
        "conversation_id": {"type": "keyword"},
        "workspace_id": {"type": "keyword"},
        "user_id": {"type": "keyword"},
        "thread_root_id": {"type": "keyword"},
        "created_at": {"type": "date", "format": "epoch_millis"},
        "text": {"type": "text", "analyzer": "parley_text"},
    },
}


def _source(doc: SearchDoc) -> dict[str, Any]:
    return {
        "message_id": doc.message_id,
        "conversation_id": doc.conversation_id,
        "workspace_id": doc.workspace_id,
        "user_id": doc.user_id,
        "thread_root_id": doc.thread_root_id,
        "created_at": to_epoch_ms(doc.created_at),
        "text": doc.text,
    }


def _index_actions(target: str, docs: Iterable[SearchDoc]) -> list[dict[str, Any]]:
    # _id = message id: indexing the same message again overwrites it (idempotent upsert).
    return [
        {"_op_type": "index", "_index": target, "_id": str(doc.message_id), "_source": _source(doc)}
        for doc in docs
    ]


class ElasticsearchSearchIndex(SearchIndex):
    """Full-text search on Elasticsearch; ``index`` is the alias that reads and writes use."""

    def __init__(self, url: str, index: str = "parley-messages") -> None:
        self._alias = index
        self._client = AsyncElasticsearch(url, request_timeout=30, max_retries=3, retry_on_timeout=True)
        self.folds_and_stems = False
        """Whether new indices fold accents and stem words (known after ``start``)."""

    async def start(self) -> None:
        """Install the template and, on first start, ``<index>-v1`` behind the alias."""
        await self._client.indices.put_index_template(
            name=self._alias,
            index_patterns=[f"{self._alias}-v*"],
            template={"settings": _settings(await self._text_analyzer()), "mappings": _MAPPINGS},
            # Above the built-in templates, should a pattern ever overlap one of theirs.
            priority=200,
            meta={"managed_by": "parley"},
        )
        if await self._client.indices.exists_alias(name=self._alias):
            return
        try:
            # Index and alias in one request: a second process starting at the same moment
            # gets "already exists" and finds the alias in place.
            await self._client.indices.create(index=f"{self._alias}-v1", aliases={self._alias: {}})
        except BadRequestError as error:
            if error.error != "resource_already_exists_exception":
                raise

    async def _text_analyzer(self) -> dict[str, Any]:
        """The folding and stemming analyzer if the server has its filters, else the standard one."""
        try:
            await self._client.indices.analyze(
                tokenizer="standard", filter=_FOLDING_STEMMING_ANALYZER["filter"], text="probe"
            )
        except BadRequestError:
            logger.warning(
                "Elasticsearch lacks the analysis-common filters (asciifolding, porter_stem): "
                "search will match whole words only, without folding accents or stemming"
            )
            self.folds_and_stems = False
            return _PLAIN_ANALYZER
        self.folds_and_stems = True
        return _FOLDING_STEMMING_ANALYZER

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        # info(), not ping(): ping() turns a failure into False, the port wants an exception.
        await self._client.info()

    async def index(self, docs: Sequence[SearchDoc]) -> None:
        if docs:
            await async_bulk(self._client, _index_actions(self._alias, docs))

    async def delete(self, message_ids: Sequence[int]) -> None:
        if not message_ids:
            return
        actions = [{"_op_type": "delete", "_index": self._alias, "_id": str(mid)} for mid in message_ids]
        # 404: already gone (a replayed delete, or a message never indexed): that is the goal.
        await async_bulk(self._client, actions, ignore_status=(404,))

    async def refresh(self) -> None:
        await self._client.indices.refresh(index=self._alias)

    async def search(self, query: SearchQuery) -> SearchResult:
        if not query.text.strip() or not query.conversation_ids:
            return SearchResult(total=0)
        offset = min(max(query.offset, 0), _MAX_RESULT_WINDOW)
        size = min(max(query.limit, 0), _MAX_RESULT_WINDOW - offset)
        response = await self._client.search(
            index=self._alias,
            query=_bool_query(query),
            highlight={
                "pre_tags": [HIGHLIGHT_START],
                "post_tags": [HIGHLIGHT_END],
                # 0 fragments: the whole message, highlighted, as the FTS5 adapter returns it.
                "fields": {"text": {"number_of_fragments": 0}},
            },
            sort=[{"_score": "desc"}, {"created_at": "desc"}, {"message_id": "desc"}],
            track_total_hits=True,
            from_=offset,
            size=size,
            source_includes=["message_id", "conversation_id", "user_id", "created_at", "text"],
        )
        hits_body = response["hits"]
        return SearchResult(
            total=int(hits_body["total"]["value"]),
            hits=[_hit(raw) for raw in hits_body["hits"]],
        )

    async def rebuild(self, docs: AsyncIterable[Sequence[SearchDoc]]) -> int:
        """Load ``docs`` into a new ``<index>-v<N+1>``, swap the alias to it, drop the old ones.

        Readers see the old index until the swap and the new one after, never a half-built one.
        Writes that ``index``/``delete`` make during the load land in the old index and are lost
        at the swap: pause the indexer meanwhile, or replay its events afterwards (idempotent).
        Returns how many documents were loaded.
        """
        existing = await self._versioned_indices()
        new_index = f"{self._alias}-v{max(existing.values(), default=0) + 1}"
        # No periodic refresh while bulk loading (faster); one refresh before the swap.
        await self._client.indices.create(index=new_index, settings={"refresh_interval": "-1"})
        loaded = 0
        async for batch in docs:
            if batch:
                await async_bulk(self._client, _index_actions(new_index, batch))
                loaded += len(batch)
        await self._client.indices.put_settings(index=new_index, settings={"refresh_interval": None})
        await self._client.indices.refresh(index=new_index)
        live = await self._alias_targets()
        await self._client.indices.update_aliases(
            actions=[
                *({"remove": {"index": name, "alias": self._alias}} for name in live),
                {"add": {"index": new_index, "alias": self._alias}},
            ]
        )
        old = [name for name in existing if name != new_index]
        if old:
            await self._client.indices.delete(index=",".join(old))
        return loaded

    async def drop(self) -> None:
        """Delete every index and the template this adapter created (tests, teardown)."""
        indices = await self._versioned_indices()
        if indices:
            await self._client.indices.delete(index=",".join(indices))
        await self._client.options(ignore_status=404).indices.delete_index_template(name=self._alias)

    async def _versioned_indices(self) -> dict[str, int]:
        """``<index>-v<N>`` name → N, for every such index, live or not."""
        response = await self._client.indices.get(index=f"{self._alias}-v*", expand_wildcards="all")
        prefix = f"{self._alias}-v"
        return {
            name: int(name.removeprefix(prefix))
            for name in response.body
            if name.removeprefix(prefix).isdigit()
        }

    async def _alias_targets(self) -> list[str]:
        if not await self._client.indices.exists_alias(name=self._alias):
            return []
        response = await self._client.indices.get_alias(name=self._alias)
        return list(response.body)


def _bool_query(query: SearchQuery) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [{"terms": {"conversation_id": [int(c) for c in query.conversation_ids]}}]
    if query.from_user_id is not None:
        filters.append({"term": {"user_id": query.from_user_id}})
    created_at: dict[str, int] = {}
    if query.before is not None:
        created_at["lt"] = to_epoch_ms(query.before)
    if query.after is not None:
        created_at["gt"] = to_epoch_ms(query.after)
    if created_at:
        filters.append({"range": {"created_at": created_at}})
    return {
        "bool": {
            "filter": filters,
            # match analyzes the text: operators, quotes and wildcards are plain words here.
            "must": [{"match": {"text": {"query": query.text, "operator": "and"}}}],
        }
    }


def _hit(raw: dict[str, Any]) -> SearchHit:
    source = raw["_source"]
    highlighted = raw.get("highlight", {}).get("text")
    return SearchHit(
        message_id=int(source["message_id"]),
        conversation_id=int(source["conversation_id"]),
        user_id=int(source["user_id"]),
        created_at=from_epoch_ms(int(source["created_at"])),
        # The highlighter can come back empty (e.g. a match only through stemming it cannot
        # place); the plain text is still the right thing to show.
        highlight=highlighted[0] if highlighted else source["text"],
    )
