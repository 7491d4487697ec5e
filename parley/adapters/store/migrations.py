"""Run Alembic migrations from inside the running service (``SqlStore.start``).

Several processes may start at once (api ×2, realtime ×2, …): on MySQL a named lock
(``GET_LOCK``) lets one of them migrate while the others wait; SQLite's write lock does the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ALEMBIC_DIR = Path(__file__).parent / "alembic"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def server_lock_name(name: str, database: str | None) -> str:
    """MySQL named locks are server-wide: scope them to the database so two Parleys sharing one
    server (a test run beside a local cluster) do not block each other. At most 64 characters."""
    digest = hashlib.sha1((database or "").encode()).hexdigest()[:16]
    return f"{name[:47]}:{digest}"


def _upgrade(sync_conn: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    is_mysql = engine.dialect.name in ("mysql", "mariadb")
    async with engine.connect() as conn:
        if is_mysql:
            lock = server_lock_name("parley_migrations", engine.url.database)
            got = (await conn.execute(text("SELECT GET_LOCK(:n, 60)"), {"n": lock})).scalar()
            if got != 1:
                raise RuntimeError("could not take the migration lock within 60 s")
            await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if is_mysql:
                await conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock})
                await conn.commit()
