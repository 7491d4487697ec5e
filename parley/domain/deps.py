"""What domain actions need from the outside world, as ports. The composition root builds
one ``Deps`` per process; actions receive it as their first argument (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from parley.domain.auth import Passwords
from parley.domain.message_writer import MessageWriter
from parley.ids import IdGenerator
from parley.ports.cache import HistoryCache, Presence, RateLimiter
from parley.ports.pubsub import PubSub
from parley.ports.search import SearchIndex
from parley.ports.store import Store
from parley.settings import Settings


@dataclass
class Deps:
    settings: Settings
    store: Store
    history_cache: HistoryCache
    presence: Presence
    rate_limiter: RateLimiter
    search: SearchIndex
    pubsub: PubSub
    ids: IdGenerator
    message_writer: MessageWriter
    passwords: Passwords
    # Called after every commit that wrote outbox rows: wakes the relay so events leave
    # within milliseconds instead of at the next poll. Must not block or raise.
    outbox_written: Callable[[], None] = lambda: None
