"""Search port on SQLite FTS5: the embedded default.

One SQLite file of its own (WAL), separate from the store, so that rebuilding the index never
touches the messages. A plain table holds one row per message (the fields the filters need) and
an external-content FTS5 table indexes its ``text``; triggers keep the two in sync, so an upsert
or a delete of a row is one statement and can never leave the full-text index behind.

Limit: one process only. All work goes through a single connection guarded by a lock; that is
plenty for one all-in-one process and is what SQLite's single writer allows anyway.

Matching follows the Elasticsearch adapter: every word of the query must occur (AND), case and
diacritics are ignored and English words are stemmed (``porter`` on top of ``unicode61``), so
"deploy" finds "Deployed". Ranking is BM25, ties broken by the newest message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

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

# Schema. ``message_id`` is the rowid of both tables, which is what lets the FTS5 table be an
# external-content index of ``search_messages``. The triggers are the documented FTS5 recipe:
# an external-content index must be told the *old* text to remove its tokens.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_messages (
    message_id      INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL,
    workspace_id    INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,  -- milliseconds since the Unix epoch, UTC
    thread_root_id  INTEGER,
    text            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_messages_by_conversation
    ON search_messages (conversation_id, created_at);
CREATE VIRTUAL TABLE IF NOT EXISTS search_messages_fts USING fts5(
    text,
    content = 'search_messages',
    content_rowid = 'message_id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS search_messages_after_insert AFTER INSERT ON search_messages BEGIN
    INSERT INTO search_messages_fts (rowid, text) VALUES (new.message_id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS search_messages_after_delete AFTER DELETE ON search_messages BEGIN
    INSERT INTO search_messages_fts (search_messages_fts, rowid, text)
        VALUES ('delete', old.message_id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS search_messages_after_update AFTER UPDATE ON search_messages BEGIN
    INSERT INTO search_messages_fts (search_messages_fts, rowid, text)
        VALUES ('delete', old.message_id, old.text);
    INSERT INTO search_messages_fts (rowid, text) VALUES (new.message_id, new.text);
END;
"""

# ``ON CONFLICT DO UPDATE`` (not ``INSERT OR REPLACE``) so that the update trigger fires and the
# old text's tokens leave the index. The ``WHERE`` skips rows that did not change: replaying
# events, which the indexer does after every restart, then costs no index churn.
_UPSERT = """
INSERT INTO search_messages
    (message_id, conversation_id, workspace_id, user_id, created_at, thread_root_id, text)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET
    conversation_id = excluded.conversation_id,
    workspace_id = excluded.workspace_id,
    user_id = excluded.user_id,
    created_at = excluded.created_at,
    thread_root_id = excluded.thread_root_id,
    text = excluded.text
WHERE (conversation_id, workspace_id, user_id, created_at, thread_root_id, text)
    IS NOT (excluded.conversation_id, excluded.workspace_id, excluded.user_id,
            excluded.created_at, excluded.thread_root_id, excluded.text)
"""

_WORD = re.compile(r"\S+")


def fts5_match_expression(text: str) -> str | None:
    """Turn what a user typed into an FTS5 query that means "all these words".

    User text is never FTS5 syntax: each whitespace-separated word becomes a quoted string
    (a ``"`` inside is doubled, FTS5's only escape), so ``AND``, ``*``, ``-``, ``(``, ``NEAR``
    and column filters are just words. A quoted word that the tokenizer splits ("don't",
    "e-mail") becomes a phrase, which is what the user meant. A word with no token at all
    (punctuation, emoji) is an empty phrase, which FTS5 ignores inside an implicit AND.
    FTS5 reads the query as a C string, so a NUL would cut it short (an unterminated quote):
    NUL counts as a space. Returns None when there is no word at all: nothing can match.
    """
    words = _WORD.findall(text.replace("\x00", " "))
    if not words:
        return None
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _row(doc: SearchDoc) -> tuple[Any, ...]:
    return (
        doc.message_id,
        doc.conversation_id,
        doc.workspace_id,
        doc.user_id,
        to_epoch_ms(doc.created_at),
        doc.thread_root_id,
        doc.text,
    )


class Fts5SearchIndex(SearchIndex):
    """Full-text search over an SQLite FTS5 index in its own file (embedded, one process)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # One connection, so one transaction at a time: without the lock two coroutines could
        # interleave their BEGINs on it.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one transaction.
        db = await aiosqlite.connect(self._path, isolation_level=None)
        await db.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across process crashes in WAL mode; the index can be rebuilt from
        # the store anyway, so the last transactions before a power loss are not worth an fsync.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("Fts5SearchIndex used before start()")
        return self._db

    async def ping(self) -> None:
        async with self._lock, self._conn.execute("SELECT 1") as cursor:
            await cursor.fetchone()

    async def index(self, docs: Sequence[SearchDoc]) -> None:
        if not docs:
            return
        rows = [_row(doc) for doc in docs]
        async with self._lock:
            await self._write_txn(_UPSERT, rows)

    async def delete(self, message_ids: Sequence[int]) -> None:
        if not message_ids:
            return
        async with self._lock:
            await self._write_txn(
                "DELETE FROM search_messages WHERE message_id = ?", [(mid,) for mid in message_ids]
            )

    async def _write_txn(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """Run ``statement`` for every row in one transaction: a batch lands whole or not at all."""
        db = self._conn
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(statement, rows)
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

    async def refresh(self) -> None:
        # A committed write is visible to the next read at once: nothing to do.
        return None

    async def rebuild(self, docs: AsyncIterable[Sequence[SearchDoc]]) -> int:
        """Replace the whole index in one transaction: searches see the old index until commit."""
        count = 0
        async with self._lock:
            db = self._conn
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute("DELETE FROM search_messages")
                async for batch in docs:
                    await db.executemany(_UPSERT, [_row(doc) for doc in batch])
                    count += len(batch)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
        return count

    async def search(self, query: SearchQuery) -> SearchResult:
        match = fts5_match_expression(query.text)
        if match is None or not query.conversation_ids:
            return SearchResult(total=0)
        where, params = _filters(query, match)
        count_sql = (
            "SELECT count(*) FROM search_messages_fts"
            " JOIN search_messages AS m ON m.message_id = search_messages_fts.rowid"
            f" WHERE {where}"
        )
        page_sql = (
            "SELECT m.message_id, m.conversation_id, m.user_id, m.created_at,"
            " highlight(search_messages_fts, 0, ?, ?)"
            " FROM search_messages_fts"
            " JOIN search_messages AS m ON m.message_id = search_messages_fts.rowid"
            f" WHERE {where}"
            # bm25() is smaller for better matches; equal relevance shows the newest first.
            " ORDER BY bm25(search_messages_fts), m.created_at DESC, m.message_id DESC"
            " LIMIT ? OFFSET ?"
        )
        page_params = [HIGHLIGHT_START, HIGHLIGHT_END, *params, max(query.limit, 0), max(query.offset, 0)]
        db = self._conn
        async with self._lock:
            # One read transaction: the total and the page come from the same snapshot.
            await db.execute("BEGIN")
            try:
                async with db.execute(count_sql, params) as cursor:
                    count_row = await cursor.fetchone()
                async with db.execute(page_sql, page_params) as cursor:
                    rows = list(await cursor.fetchall())
            finally:
                await db.execute("COMMIT")
        total = int(count_row[0]) if count_row is not None else 0
        hits = [
            SearchHit(
                message_id=row[0],
                conversation_id=row[1],
                user_id=row[2],
                created_at=from_epoch_ms(row[3]),
                highlight=row[4],
            )
            for row in rows
        ]
        return SearchResult(total=total, hits=hits)


def _filters(query: SearchQuery, match: str) -> tuple[str, list[Any]]:
    """The WHERE clause shared by the count and the page, with its parameters."""
    # The allowed conversations travel as one JSON parameter: no limit on how many there are
    # (a user may belong to thousands) and no SQL built from their number.
    clauses = [
        "search_messages_fts MATCH ?",
        "m.conversation_id IN (SELECT value FROM json_each(?))",
    ]
    params: list[Any] = [match, json.dumps([int(cid) for cid in query.conversation_ids])]
    if query.from_user_id is not None:
        clauses.append("m.user_id = ?")
        params.append(query.from_user_id)
    if query.before is not None:
        clauses.append("m.created_at < ?")
        params.append(to_epoch_ms(query.before))
    if query.after is not None:
        clauses.append("m.created_at > ?")
        params.append(to_epoch_ms(query.after))
    return " AND ".join(clauses), params
