"""``python -m bench.bulk_seed``: fill a Parley with N stored messages (1,000,000 by default), fast.

Three steps, each usable on its own (``bench/large_history.py`` calls them with a server
restart in between):

1. ``set_up_via_api``: accounts, a workspace and its channels through the running server's REST
   API, as users would make them (a few hundred calls: sign-ups, joins). Every account joins
   every channel, so the first account can read and search all of them.
2. ``write_messages``: N messages written straight into the SQL store's ``messages`` table
   (SQLAlchemy core ``executemany`` in chunks, ~100k rows per transaction), spread evenly over
   the channels. Each transaction reserves its seqs as a send does (``UPDATE conversations SET
   last_seq = last_seq + n``), so the messages take ``seq`` last_seq+1 … last_seq+n, and marks
   them read for every member (an import is old history, not unread news). Ids are valid,
   time-ordered snowflakes (``parley.ids`` layout) at one message per minute per channel from
   ``BASE_TIME``, on node id 1023, which no live process uses, so they never collide with ids a
   server hands out.
   **No outbox rows**: this is a bulk import, not live traffic. The figures it is for are reads
   (history pages, search) over a large store; the event log, fan-out and the live indexer are
   not what they measure, and a million events would only be replayed through consumers that
   have nothing to say about them (nobody is connected; the index is rebuilt below instead).
3. ``rebuild_search_index``: Parley's own ``reindex`` (``parley.runtime.reindex``) rebuilds the
   search index (FTS5 or Elasticsearch) from the store, since the live indexer never saw these
   messages. FTS5 belongs to one process: stop the server for this step if you can.

The text is drawn from a synthetic vocabulary (``Corpus``, fixed seed) with Zipf frequencies,
so every query word's selectivity is known in advance: rank 1 is in ~70 % of messages, the
rarest ranks in a few hundred of a million. The words are made of consonant + a/o/u syllables,
which the Porter stemmer (FTS5 and Elasticsearch) leaves as they are, so no two words merge.

Idempotent: a channel that already holds its share of messages gets none; one that holds fewer
is topped up to its share, and the index is rebuilt only when something was written (or with
``--reindex always``, e.g. after a run interrupted between steps 2 and 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any, Literal, TextIO

import httpx
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bench.clients import PASSWORD, Account, api, bounded
from parley.adapters.store import schema as t
from parley.composition import Parley
from parley.ids import EPOCH_MS
from parley.runtime.reindex import reindex
from parley.settings import Settings

BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)  # the seeded history starts here
MESSAGE_INTERVAL = timedelta(minutes=1)  # between two messages of one channel
BULK_NODE_ID = 1023  # the snowflake node id of imported messages (live processes use others)
_TIME_SHIFT, _NODE_SHIFT = 22, 12  # parley.ids: 41 bits of ms | 10 bits of node | 12 bits of seq
ROWS_PER_STATEMENT = 5_000
ROWS_PER_TRANSACTION = 100_000
REINDEX_BATCH = 2_000
PROGRESS_EVERY_S = 5.0


def progress(message: str, out: TextIO | None = None) -> None:
    print(f"[bulk_seed {time.strftime('%H:%M:%S')}] {message}", file=out or sys.stdout, flush=True)


# -- what to seed ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedSpec:
    """The data set: ``messages`` spread evenly over ``channels``, written by ``authors``."""

    messages: int = 1_000_000
    channels: int = 100
    authors: int = 20
    prefix: str = "bulk"  # usernames ``<prefix>0`` …, channels ``<prefix>-0000`` …
    seed: int = 1
    vocabulary: int = 5_000

    def share(self, channel_index: int) -> int:
        """How many messages channel ``channel_index`` holds when seeding is complete."""
        base, extra = divmod(self.messages, self.channels)
        return base + (1 if channel_index < extra else 0)

    def username(self, n: int) -> str:
        return f"{self.prefix}{n}"

    def channel_name(self, n: int) -> str:
        return f"{self.prefix}-{n:04d}"


@dataclass(frozen=True)
class SeedPlan:
    """What ``set_up_via_api`` made (or found): ``accounts[0]`` owns the workspace."""

    workspace_id: int
    channel_ids: list[int]
    accounts: list[Account]

    @property
    def reader(self) -> Account:
        return self.accounts[0]


class Corpus:
    """A synthetic vocabulary with Zipf frequencies (P(rank r) ∝ 1/r): the seeded text, and
    how many messages each word is expected to be in."""

    MIN_WORDS, MAX_WORDS = 4, 20  # words per message, uniform

    def __init__(self, seed: int, size: int = 5_000) -> None:
        rng = random.Random(f"vocabulary-{seed}")
        consonants, vowels = "bdfgklmnprstvz", "aou"
        words: dict[str, None] = {}  # insertion-ordered set: rank order
        while len(words) < size:
            syllables = rng.randint(2, 4)
            words.setdefault("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
        self.words = list(words)
        weights = [1 / r for r in range(1, size + 1)]
        self._total_weight = sum(weights)
        self._cum_weights = list(accumulate(weights))

    def word(self, rank: int) -> str:
        """The word of frequency rank ``rank`` (1 = the most common)."""
        return self.words[rank - 1]

    def doc_fraction(self, rank: int) -> float:
        """Expected fraction of messages that contain the word of ``rank``."""
        p = 1 / rank / self._total_weight
        lengths = range(self.MIN_WORDS, self.MAX_WORDS + 1)
        return sum(1 - (1 - p) ** n for n in lengths) / len(lengths)

    def texts(self, rng: random.Random, count: int) -> list[str]:
        lengths = [rng.randint(self.MIN_WORDS, self.MAX_WORDS) for _ in range(count)]
        drawn = rng.choices(self.words, cum_weights=self._cum_weights, k=sum(lengths))
        texts, start = [], 0
        for n in lengths:
            texts.append(" ".join(drawn[start : start + n]))
            start += n
        return texts


def message_id(channel_index: int, seq: int) -> int:
    """A valid snowflake at the message's ``created_at``; the channel index in the sequence
    bits keeps ids unique across channels whose messages share a millisecond."""
    ms = int(created_at(seq).timestamp() * 1000)
    return ((ms - EPOCH_MS) << _TIME_SHIFT) | (BULK_NODE_ID << _NODE_SHIFT) | (channel_index % 4096)


def created_at(seq: int) -> datetime:
    return BASE_TIME + seq * MESSAGE_INTERVAL


# -- step 1: accounts, workspace, channels (REST API) ----------------------------------------
async def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        req = response.request
        raise RuntimeError(f"{req.method} {req.url.path} → {response.status_code}: {response.text[:300]}")
    return response.json() if response.content else None


async def _account(http: httpx.AsyncClient, username: str) -> Account:
    """Sign up, or log in when the account exists (a re-run)."""
    credentials = {"username": username, "password": PASSWORD}
    r = await http.post("/auth/signup", json=credentials)
    if r.status_code == 409:
        r = await http.post("/auth/login", json=credentials)
    body = await _ok(r)
    return Account(body["user"]["id"], username, body["token"])


async def _join(http: httpx.AsyncClient, path: str, account: Account, body: Any = None) -> None:
    await _ok(await http.post(path, json=body, headers=account.headers))


async def set_up_via_api(http: httpx.AsyncClient, spec: SeedSpec) -> SeedPlan:
    """Accounts, one workspace and ``spec.channels`` public channels, every account in every
    channel; what exists already (same prefix) is found and reused."""
    accounts = await bounded([partial(_account, http, spec.username(n)) for n in range(spec.authors)])
    owner = accounts[0]
    name = f"{spec.prefix} bulk history"
    found = [w for w in await _ok(await http.get("/workspaces", headers=owner.headers)) if w["name"] == name]
    workspace = (
        found[0]
        if found
        else await _ok(await http.post("/workspaces", json={"name": name}, headers=owner.headers))
    )
    ws_id = workspace["id"]
    invite = await _ok(await http.post(f"/workspaces/{ws_id}/invites", headers=owner.headers))
    # Joining twice is a no-op: a re-run may simply join again.
    await bounded(
        [partial(_join, http, "/workspaces/join", a, {"code": invite["code"]}) for a in accounts[1:]]
    )
    listed = await _ok(await http.get(f"/workspaces/{ws_id}/conversations", headers=owner.headers))
    by_name = {c["conversation"]["name"]: c["conversation"]["id"] for c in listed}
    channel_ids: list[int] = []
    for n in range(spec.channels):
        channel = spec.channel_name(n)
        if channel not in by_name:
            body = {"name": channel, "private": False}
            made = await _ok(
                await http.post(f"/workspaces/{ws_id}/channels", json=body, headers=owner.headers)
            )
            by_name[channel] = made["id"]
        channel_ids.append(int(by_name[channel]))
    joins = [partial(_join, http, f"/conversations/{c}/join", a) for c in channel_ids for a in accounts[1:]]
    await bounded(joins, concurrency=8)
    return SeedPlan(int(ws_id), channel_ids, accounts)


# -- step 2: messages straight into the store ------------------------------------------------
@dataclass(frozen=True)
class WriteReport:
    inserted: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.inserted / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Work:
    """One channel's missing messages, generated before its transaction starts."""

    channel_index: int
    conversation_id: int
    texts: list[str]
    authors: list[int]


def store_engine(database_url: str) -> AsyncEngine:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    if database_url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=10000")
            # An import can be redone: no fsync per commit (WAL keeps the file consistent).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


async def existing_counts(conn: AsyncConnection, conversation_ids: Sequence[int]) -> dict[int, int]:
    m = t.messages
    rows = await conn.execute(
        select(m.c.conversation_id, func.count())
        .where(m.c.conversation_id.in_(conversation_ids))
        .group_by(m.c.conversation_id)
    )
    return {int(cid): int(n) for cid, n in rows}


def channel_messages(
    spec: SeedSpec, corpus: Corpus, channel_index: int, author_ids: Sequence[int]
) -> tuple[list[str], list[int]]:
    """The texts and authors of a channel's full share, in seq order: the same (seed, channel)
    always draws the same ones, so a re-run is reproducible and a test can count words."""
    rng = random.Random(f"channel-{spec.seed}-{channel_index}")
    want = spec.share(channel_index)
    texts = corpus.texts(rng, want)
    return texts, rng.choices(list(author_ids), k=want)


def _missing_work(plan: SeedPlan, spec: SeedSpec, corpus: Corpus, have: dict[int, int]) -> Iterator[_Work]:
    author_ids = [int(a.id) for a in plan.accounts]
    for index, conversation_id in enumerate(plan.channel_ids):
        got = have.get(conversation_id, 0)
        if got >= spec.share(index):
            continue
        texts, authors = channel_messages(spec, corpus, index, author_ids)
        yield _Work(index, conversation_id, texts[got:], authors[got:])


async def _write_channel(conn: AsyncConnection, work: _Work) -> int:
    """Reserve the channel's seqs (as a send does), insert its rows, mark them read."""
    n = len(work.texts)
    c = t.conversations
    await conn.execute(update(c).where(c.c.id == work.conversation_id).values(last_seq=c.c.last_seq + n))
    last_seq = int(
        (await conn.execute(select(c.c.last_seq).where(c.c.id == work.conversation_id))).scalar_one()
    )
    first = last_seq - n + 1
    workspace_id = int(
        (await conn.execute(select(c.c.workspace_id).where(c.c.id == work.conversation_id))).scalar_one()
    )
    rows = [
        {
            "id": message_id(work.channel_index, seq),
            "conversation_id": work.conversation_id,
            "workspace_id": workspace_id,
            "seq": seq,
            "user_id": author,
            "text": text,
            "client_msg_id": None,
            "thread_root_id": None,
            "reply_count": 0,
            "mentions": "[]",
            "mentions_channel": False,
            "created_at": created_at(seq).replace(tzinfo=None),  # the store keeps naive UTC
            "edited_at": None,
            "deleted": False,
        }
        for seq, text, author in zip(range(first, last_seq + 1), work.texts, work.authors, strict=True)
    ]
    for start in range(0, n, ROWS_PER_STATEMENT):
        await conn.execute(insert(t.messages), rows[start : start + ROWS_PER_STATEMENT])
    cm = t.conversation_members
    await conn.execute(
        update(cm).where(cm.c.conversation_id == work.conversation_id).values(last_read_seq=last_seq)
    )
    return n


async def write_messages(database_url: str, plan: SeedPlan, spec: SeedSpec) -> WriteReport:
    """Top every channel up to its share of ``spec.messages``; ~100k rows per transaction."""
    corpus = Corpus(spec.seed, spec.vocabulary)
    engine = store_engine(database_url)
    try:
        async with engine.connect() as conn:
            have = await existing_counts(conn, plan.channel_ids)
        missing = spec.messages - sum(
            min(have.get(c, 0), spec.share(i)) for i, c in enumerate(plan.channel_ids)
        )
        if missing <= 0:
            progress(
                f"{spec.messages:,} messages already stored in {spec.channels} channels: nothing to write"
            )
            return WriteReport(0, 0.0)
        progress(f"writing {missing:,} messages into {database_url.split('://')[0]}")
        started = time.perf_counter()
        inserted = 0
        batch: list[_Work] = []
        for work in _missing_work(plan, spec, corpus, have):
            batch.append(work)
            if sum(len(w.texts) for w in batch) >= ROWS_PER_TRANSACTION:
                inserted += await _write_batch(engine, batch)
                batch = []
                _report_rate("inserted", inserted, missing, started)
        if batch:
            inserted += await _write_batch(engine, batch)
            _report_rate("inserted", inserted, missing, started)
        return WriteReport(inserted, time.perf_counter() - started)
    finally:
        await engine.dispose()


async def _write_batch(engine: AsyncEngine, batch: Sequence[_Work]) -> int:
    async with engine.begin() as conn:
        return sum([await _write_channel(conn, work) for work in batch])


def _report_rate(what: str, done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    progress(f"{what} {done:,}/{total:,} rows ({done / elapsed:,.0f} rows/s, {elapsed:.1f} s)")


# -- step 3: the search index, rebuilt from the store ------------------------------------------
class _ThrottledProgress(io.TextIOBase):
    """``reindex`` prints a line per batch: pass one on every few seconds, and its last line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out  # the real stdout: this object replaces it while reindex runs
        self._last = 0.0

    def write(self, s: str) -> int:
        for line in s.splitlines():
            now = time.monotonic()
            if "done" in line or now - self._last >= PROGRESS_EVERY_S:
                self._last = now
                progress(line.strip(), self._out)
        return len(s)


async def rebuild_search_index(settings: Settings) -> tuple[int, float]:
    """Parley's ``reindex`` on these settings; returns (documents, seconds)."""
    started = time.perf_counter()
    with contextlib.redirect_stdout(_ThrottledProgress(sys.stdout)):
        count = await reindex(Parley(settings, "tool"), batch_size=REINDEX_BATCH)
    seconds = time.perf_counter() - started
    progress(f"search index rebuilt: {count:,} documents in {seconds:.1f} s ({count / seconds:,.0f} docs/s)")
    return count, seconds


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings from a server's ``PARLEY_*`` environment (see ``ParleyServer.parley_env``)."""
    fields = {k.removeprefix("PARLEY_").lower(): v for k, v in env.items() if k.startswith("PARLEY_")}
    return Settings.model_validate(fields)


# -- all three, for the command line ---------------------------------------------------------
Reindex = Literal["auto", "always", "never"]


async def seed(api_url: str, settings: Settings, spec: SeedSpec, reindex_when: Reindex = "auto") -> SeedPlan:
    async with api(api_url) as http:
        plan = await set_up_via_api(http, spec)
    progress(
        f"workspace {plan.workspace_id}: {len(plan.channel_ids)} channels, {len(plan.accounts)} accounts"
    )
    report = await write_messages(settings.effective_database_url, plan, spec)
    if report.inserted:
        progress(
            f"wrote {report.inserted:,} messages in {report.seconds:.1f} s ({report.rows_per_s:,.0f} rows/s)"
        )
    if reindex_when == "always" or (reindex_when == "auto" and report.inserted):
        await rebuild_search_index(settings)
    return plan


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bulk_seed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The store and the search engine are the server's: run this with the same PARLEY_* "
        "environment as the server (as for python -m parley.runtime.reindex). Example: "
        "PARLEY_DATA_DIR=./data python -m bench.bulk_seed --url http://127.0.0.1:8000. "
        "Restart the server afterwards if anyone read these channels' history before the import "
        "(its first-page cache does not know the imported messages). "
        "Used by `python -m bench.run history-1m`.",
    )
    defaults = SeedSpec()
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running server (default %(default)s)")
    p.add_argument(
        "--messages", type=int, default=defaults.messages, help="messages in all (default %(default)s)"
    )
    p.add_argument("--channels", type=int, default=defaults.channels, help="default %(default)s")
    p.add_argument("--authors", type=int, default=defaults.authors, help="accounts (default %(default)s)")
    p.add_argument(
        "--prefix", default=defaults.prefix, help="of usernames and channel names (default %(default)s)"
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="of the text (default %(default)s)")
    p.add_argument(
        "--reindex",
        choices=["auto", "always", "never"],
        default="auto",
        help="rebuild the search index: when messages were written (auto, the default), always, or never",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spec = SeedSpec(args.messages, args.channels, args.authors, args.prefix, args.seed)
    asyncio.run(seed(args.url, Settings(), spec, args.reindex))
    return 0


if __name__ == "__main__":
    sys.exit(main())
