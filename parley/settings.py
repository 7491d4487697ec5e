"""Process settings, read from ``PARLEY_*`` environment variables.

No engine URL set means the embedded default for that port (SQLite, in-process log,
in-memory cache/pub-sub, FTS5 search), so a bare ``python -m services.allinone`` just works.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Only acceptable in the embedded development mode; `env=prod` refuses to start with it.
DEV_SECRET = "parley-dev-secret-change-me-0123456789abcdef"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = 8000
    node_id: int = Field(default=0, ge=0, le=1023, description="Snowflake node id; unique per process")
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    forwarded_allow_ips: str = Field(
        default="127.0.0.1", description="proxies whose X-Forwarded-For is trusted (nginx); '*' in compose"
    )
    startup_timeout: float = Field(default=60.0, description="seconds to wait for each engine at start-up")
    nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="added to the process's nice value at start: work off the users' path (the "
        "indexer, the cache) yields the CPU to the delivery path when they share a machine",
    )

    # Engines. Absent → embedded adapter.
    data_dir: Path = Path("./data")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    redis_url: str | None = None
    elasticsearch_url: str | None = None

    # Store
    db_pool_size: int = 20
    db_max_overflow: int = 20
    db_pool_timeout: float = 10.0
    db_connect_timeout: float = 5.0
    message_writers: int = Field(
        default=1,
        ge=1,
        le=4,
        description="concurrent send batches per process on MySQL, each owning a share of the "
        "conversations (SQLite has one writer: always 1)",
    )

    # Event log
    events_topic: str = "parley.conversation-events.v1"
    events_partitions: int = 8
    events_replication_factor: int = 1
    kafka_linger_ms: int = Field(
        # 0: the relay hands each pass's rows to one publish, so there is nothing to wait for;
        # 5 ms of linger added 10 ms to the relay hop on a busy box (docs/benchmarks.md).
        default=0,
        ge=0,
        description="the producer's wait for more records before a produce request",
    )
    indexer_linger_ms: int = Field(
        default=250,
        ge=0,
        le=5_000,
        description="how long the indexer gathers events into one bulk write (search shows a "
        "message at most this much later; Elasticsearch's own refresh is every second)",
    )
    dead_letter_topic: str = "parley.conversation-events.v1.dlq"
    consumer_group_prefix: str = Field(default="parley.", description="Kafka group id = prefix + service")
    redis_key_prefix: str = Field(default="parley:", description="so several Parleys can share one Redis")
    relay_poll_interval: float = 0.2
    relay_announcements: bool = Field(
        default=True,
        description="writers tell the relay their committed outbox rows over pub/sub, so it "
        "publishes them without reading them back (the table stays the record)",
    )
    relay_batch_size: int = 500
    eventlog_retain_per_partition: int = 10_000
    outbox_retention_hours: float = Field(default=72.0, description="published outbox rows kept for resume")

    # Search
    search_index: str = "parley-messages"

    # Auth
    secret_key: str = DEV_SECRET
    token_ttl_seconds: int = 7 * 24 * 3600
    # argon2id cost. The defaults are argon2-cffi's (RFC 9106's second profile: 3 passes over
    # 64 MiB, ~0.2 s of CPU). A test suite may lower them, as Synapse's bcrypt_rounds and Django's
    # test hashers allow; prod refuses less than OWASP's minimum (2 passes over 19 MiB).
    password_hash_time_cost: int = Field(default=3, ge=1, le=10)
    password_hash_memory_kib: int = Field(default=65536, ge=32, le=1 << 21)

    # Limits (all user-facing; see docs/protocol.md)
    max_message_chars: int = 40_000
    max_frame_bytes: int = 256 * 1024
    max_connections_per_user: int = 20
    send_queue_size: int = 2_000
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    resume_max_events: int = 1_000
    history_cache_size: int = 50
    ws_ping_interval: float = 20.0
    ws_write_defer_max_ms: float = Field(
        default=10.0,
        ge=0,
        description="a busy realtime node (last socket-write round over 1 ms) waits as long as that round "
        "took, up to this, before the next: frames gather and go out several per write. 0 = never wait",
    )
    ws_compression: bool = Field(
        default=False,
        description="negotiate permessage-deflate: less bandwidth, but ~100 KB of zlib state and CPU per "
        "frame for every socket that asks for it (browsers do)",
    )
    presence_ttl_seconds: int = 60

    # Abuse limits at the edge (see docs/security.md). A rate of 0 turns that limit off.
    ip_rate_limit_per_second: float = Field(default=100.0, ge=0, description="REST requests/s per address")
    ip_rate_limit_burst: int = Field(default=400, ge=1)
    login_attempts_per_minute: int = Field(default=10, ge=0, description="per username and client address")
    # Browser origins allowed to call the REST API cross-origin (JSON list); empty = same origin only.
    cors_origins: list[str] = []

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_prod(self) -> Settings:
        if self.env == "prod" and self.secret_key == DEV_SECRET:
            raise ValueError("PARLEY_SECRET_KEY must be set to a real secret when PARLEY_ENV=prod")
        if len(self.secret_key) < 32:
            raise ValueError("PARLEY_SECRET_KEY must be at least 32 characters")
        if self.env == "prod" and (self.password_hash_time_cost < 2 or self.password_hash_memory_kib < 19456):
            raise ValueError("PARLEY_ENV=prod needs a password hash cost of at least 2 passes over 19456 KiB")
        return self

    @property
    def embedded_database_url(self) -> str:
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.sqlite3').resolve()}"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or self.embedded_database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
