"""The composition root: the one place that picks adapters from settings and wires them.

A process builds one ``Parley`` with its role; every dependency is built lazily on first use,
so a relay process never opens a search index and an indexer never opens WebSockets.

    setting absent                → embedded adapter (one process only)
    PARLEY_DATABASE_URL           → SqlStore on MySQL/MariaDB (else SQLite under PARLEY_DATA_DIR)
    PARLEY_KAFKA_BOOTSTRAP        → KafkaEventLog          (else EmbeddedEventLog, SQLite file)
    PARLEY_REDIS_URL              → Redis pub/sub + caches (else in-memory)
    PARLEY_ELASTICSEARCH_URL      → Elasticsearch          (else SQLite FTS5)

Wrapping order for the cache-side ports (outermost first): FailOpen → Redis adapter. The
in-memory adapters cannot fail, so they are not wrapped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

from parley.adapters.cache.memory import MemoryHistoryCache, MemoryPresence, MemoryRateLimiter
from parley.adapters.eventlog.embedded import EmbeddedEventLog
from parley.adapters.pubsub.memory import MemoryPubSub
from parley.adapters.search.fts5 import Fts5SearchIndex
from parley.adapters.store.sql import SqlStore
from parley.domain.actions import messages
from parley.domain.auth import Passwords
from parley.domain.deps import Deps
from parley.domain.message_writer import BatchTiming, MessageWriter
from parley.ids import IdGenerator
from parley.ports.cache import HistoryCache, Presence, RateLimiter
from parley.ports.eventlog import EventLog
from parley.ports.pubsub import PubSub
from parley.ports.search import SearchIndex
from parley.ports.store import Store
from parley.runtime import metrics
from parley.runtime.commit_announcements import CommitAnnouncer
from parley.runtime.consumer import ConsumerRunner, EventConsumer
from parley.runtime.resilience import FailOpenHistoryCache, FailOpenPresence, FailOpenRateLimiter
from parley.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["api", "realtime", "relay", "fanout", "indexer", "cache", "slack", "allinone", "tool"]
# Roles whose commits a relay in another process hears about with their rows (the all-in-one
# wakes its own relay, which follows the store's commit feed; tools do not wake the relay).
ANNOUNCING_ROLES = frozenset({"api", "realtime", "slack"})


class Parley:
    def __init__(self, settings: Settings, role: Role) -> None:
        self.settings = settings
        self.role = role
        self._started: list[Any] = []
        # A relay in this process (the all-in-one): woken directly after a commit, no pub/sub
        # round trip; returns False when it is on standby and another process publishes.
        self.local_relay: Callable[[], bool] | None = None

    # -- engines -------------------------------------------------------------------------
    @cached_property
    def store(self) -> Store:
        s = self.settings
        store = SqlStore(
            s.effective_database_url,
            pool_size=s.db_pool_size,
            max_overflow=s.db_max_overflow,
            pool_timeout=s.db_pool_timeout,
            connect_timeout=s.db_connect_timeout,
        )
        if s.relay_announcements and self.role in ANNOUNCING_ROLES:
            store.on_commit(self.commit_announcer.committed)
        return store

    @cached_property
    def event_log(self) -> EventLog:
        s = self.settings
        if s.kafka_bootstrap:
            from parley.adapters.eventlog.kafka import KafkaEventLog

            return KafkaEventLog(
                s.kafka_bootstrap,
                replication_factor=s.events_replication_factor,
                client_id=f"parley-{self.role}",
                linger_ms=s.kafka_linger_ms,
            )
        return EmbeddedEventLog(
            s.data_dir / "eventlog.sqlite3",
            default_partitions=s.events_partitions,
            retain_per_partition=s.eventlog_retain_per_partition,
        )

    @cached_property
    def _redis(self) -> Any:
        from parley.adapters.cache.redis import redis_client

        assert self.settings.redis_url
        return redis_client(self.settings.redis_url)

    @cached_property
    def pubsub(self) -> PubSub:
        if self.settings.redis_url:
            from parley.adapters.pubsub.redis import RedisPubSub

            return RedisPubSub(self.settings.redis_url)
        return MemoryPubSub()

    @cached_property
    def history_cache(self) -> HistoryCache:
        if self.settings.redis_url:
            from parley.adapters.cache.redis import RedisHistoryCache

            return FailOpenHistoryCache(RedisHistoryCache(self._redis, prefix=self.settings.redis_key_prefix))
        return MemoryHistoryCache()

    @cached_property
    def presence(self) -> Presence:
        if self.settings.redis_url:
            from parley.adapters.cache.redis import RedisPresence

            return FailOpenPresence(RedisPresence(self._redis, prefix=self.settings.redis_key_prefix))
        return MemoryPresence()

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        if self.settings.redis_url:
            from parley.adapters.cache.redis import RedisRateLimiter

            return FailOpenRateLimiter(RedisRateLimiter(self._redis, prefix=self.settings.redis_key_prefix))
        return MemoryRateLimiter()

    @cached_property
    def search(self) -> SearchIndex:
        s = self.settings
        if s.elasticsearch_url:
            from parley.adapters.search.elasticsearch import ElasticsearchSearchIndex

            return ElasticsearchSearchIndex(s.elasticsearch_url, index=s.search_index)
        return Fts5SearchIndex(s.data_dir / "search.sqlite3")

    @cached_property
    def ids(self) -> IdGenerator:
        # Several processes share one database: derive a distinct node id when none is given.
        node = self.settings.node_id or (os.getpid() % 1024)
        return IdGenerator(node)

    @cached_property
    def message_writer(self) -> MessageWriter:
        # SQLite has one writer: one batch at a time. MySQL locks per conversation: it can run
        # several, at the cost of smaller batches (more commits and round trips per send).
        concurrency = 1 if self.settings.database_url is None else self.settings.message_writers
        return MessageWriter(
            self.store,
            self.ids,
            prepare=messages.prepare_sends,
            on_commit=self._batch_committed,
            concurrency=concurrency,
        )

    def consumer_runner(self, consumer: EventConsumer) -> ConsumerRunner:
        s = self.settings
        return ConsumerRunner(
            self.event_log,
            consumer,
            topic=s.events_topic,
            dead_letter_topic=s.dead_letter_topic,
            group_prefix=s.consumer_group_prefix,
        )

    @cached_property
    def deps(self) -> Deps:
        return Deps(
            settings=self.settings,
            store=self.store,
            history_cache=self.history_cache,
            presence=self.presence,
            rate_limiter=self.rate_limiter,
            search=self.search,
            pubsub=self.pubsub,
            ids=self.ids,
            message_writer=self.message_writer,
            passwords=Passwords(
                self.settings.password_hash_time_cost, self.settings.password_hash_memory_kib
            ),
            outbox_written=self.outbox_written,
        )

    def _batch_committed(self, sends: int, seconds: float, timing: BatchTiming) -> None:
        metrics.WRITE_BATCH_SIZE.observe(sends)
        metrics.WRITE_BATCH_SECONDS.observe(seconds)
        metrics.observe_batch_phases(timing.phases())
        self.outbox_written()

    def outbox_written(self) -> None:
        """Wake the relay (wherever it runs) after a commit, telling it the committed rows
        where this process collects them; coalesced, fire-and-forget."""
        if self.local_relay is not None and self.local_relay():
            return
        self.commit_announcer.announce()

    @cached_property
    def commit_announcer(self) -> CommitAnnouncer:
        return CommitAnnouncer(self.pubsub)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, *components: str) -> None:
        """Start the named engines (``store``, ``event_log``, ``pubsub``, ``search``), retrying
        each with backoff until ``startup_timeout``; the error names the engine that is down."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        for name in components:
            engine = getattr(self, name)
            await _start_with_retry(name, engine.start, self.settings.startup_timeout)
            self._started.append(engine)
            if name == "event_log":
                await self.event_log.ensure_topic(self.settings.events_topic, self.settings.events_partitions)
                await self.event_log.ensure_topic(self.settings.dead_letter_topic, 1)

    async def close(self) -> None:
        if "message_writer" in self.__dict__:
            await self.message_writer.close()
        for engine in reversed(self._started):
            try:
                await engine.close()
            except Exception:
                log.warning("closing %s failed", type(engine).__name__, exc_info=True)
        self._started.clear()

    async def readiness(self) -> dict[str, str]:
        """Per started engine: "ok" or the reason it is not."""
        checks: dict[str, str] = {}
        for name in ("store", "event_log", "pubsub", "search"):
            if name not in self.__dict__:
                continue
            try:
                await asyncio.wait_for(getattr(self, name).ping(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {exc}"[:200]
        return checks


async def _start_with_retry(name: str, start: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.5
    while True:
        try:
            await start()
            return
        except Exception as exc:
            if loop.time() + delay > deadline:
                raise RuntimeError(f"{name} is unavailable: {exc}") from exc
            log.warning("%s unavailable (%s); retrying in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
